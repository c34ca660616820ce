//! A minimal QMP client: enough to hot-remove a device from a running guest.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{HarnessError, Result};

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to QEMU's `-qmp unix:PATH,server=on,wait=off` socket and leaves capability
    /// negotiation.
    pub fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| HarnessError::io("connecting to QMP at", socket, e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| HarnessError::io("configuring", socket, e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| HarnessError::io("cloning", socket, e))?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(HarnessError::Qemu(format!(
                "unexpected QMP greeting: {greeting}"
            )));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value; asynchronous events are skipped.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}")
            .map_err(|e| HarnessError::Qemu(format!("QMP write: {e}")))?;
        loop {
            let message = self.read_message()?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                return Err(HarnessError::Qemu(format!("QMP {command}: {error}")));
            }
        }
    }

    /// Asks QEMU to unplug the device with this `id` (the guest must let go of it).
    pub fn device_del(&mut self, id: &str) -> Result<()> {
        self.execute("device_del", json!({ "id": id })).map(|_| ())
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| HarnessError::Qemu(format!("QMP read: {e}")))?;
        serde_json::from_str(&line)
            .map_err(|e| HarnessError::Qemu(format!("QMP sent non-JSON `{line}`: {e}")))
    }
}
