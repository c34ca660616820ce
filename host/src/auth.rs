//! DH-HMAC-CHAP on one connected queue, as the Linux host runs it after Connect
//! (`nvme_queue_auth_work`): Authentication Send (Negotiate), Receive (Challenge), Send
//! (Reply), Receive (Success1), and Send (Success2) when the controller authenticated itself;
//! on a refusal of the host's own, an AUTH_Failure2 before giving up. The messages and their
//! checks are `vfnvme_auth::HostAuth`'s; this is their transport.

use vfnvme_auth::{HashId, HostAuth, HostAuthError};
use vfnvme_spec::auth::{connect_authreq, AuthCommand, AuthDirection};

use crate::error::HostError;
use crate::options::HostOptions;
use crate::queue::HostQueue;

/// Allocation length of every Authentication Receive: 4 KiB, as the Linux host (enough for an
/// ffdhe8192 Challenge).
const RECEIVE_LEN: usize = 4096;

/// After a Connect answered with `result` (its DW0): when the controller asks for
/// authentication (ATR), runs the exchange with the options' secrets, as the Linux host
/// (`nvme_tcp_setup_ctrl` → `nvme_auth_negotiate` when ATR is set); without a secret that is
/// an error saying so.
pub(crate) fn authenticate_if_required(
    queue: &mut HostQueue,
    result: u32,
    subsystem_nqn: &str,
    options: &HostOptions,
) -> Result<(), HostError> {
    if result & connect_authreq::ATR == 0 {
        return Ok(());
    }
    let Some(secret) = options.dhchap_secret.as_deref() else {
        return Err(HostError::AuthenticationRequired {
            address: queue.address(),
            qid: queue.qid(),
        });
    };
    let mut auth = HostAuth::new(
        &options.host_nqn,
        subsystem_nqn,
        secret,
        options.dhchap_ctrl_secret.as_deref(),
        &HashId::ALL,
        &options.dhchap_dh_groups,
        queue.qid(),
    );
    authenticate(queue, &mut auth)
}

/// Runs the exchange `auth` on `queue` (the admin queue or an I/O queue, right after its
/// Connect). On success the queue may carry commands.
pub fn authenticate(queue: &mut HostQueue, auth: &mut HostAuth) -> Result<(), HostError> {
    send(queue, &auth.negotiate(), "Authentication Send (Negotiate)")?;
    let challenge = receive(queue, "Authentication Receive (Challenge)")?;
    let reply = auth
        .challenge(&challenge)
        .or_else(|error| give_up(queue, error))?;
    send(queue, &reply, "Authentication Send (Reply)")?;
    let success1 = receive(queue, "Authentication Receive (Success1)")?;
    match auth
        .success1(&success1)
        .or_else(|error| give_up(queue, error))?
    {
        Some(success2) => send(queue, &success2, "Authentication Send (Success2)"),
        None => Ok(()),
    }
}

/// Tells the controller why the host gives up (its Failure2), then fails.
fn give_up<T>(queue: &mut HostQueue, error: HostAuthError) -> Result<T, HostError> {
    if let HostAuthError::Refusing { failure2, .. } = &error {
        // The exchange has failed either way; a lost Failure2 changes nothing for the host.
        let _ = send(queue, failure2, "Authentication Send (Failure2)");
    }
    Err(HostError::Authentication {
        address: queue.address(),
        qid: queue.qid(),
        source: error,
    })
}

fn send(queue: &mut HostQueue, message: &[u8], what: &'static str) -> Result<(), HostError> {
    let command = AuthCommand {
        direction: AuthDirection::Send,
        length: message.len() as u32,
    }
    .to_command(0);
    // In the capsule, as Connect's data: the largest message, an ffdhe8192 Reply with
    // SHA-512, is 1168 bytes.
    queue.in_capsule_max = queue.in_capsule_max.max(message.len());
    queue.execute(command, message, 0, what).map(|_| ())
}

fn receive(queue: &mut HostQueue, what: &'static str) -> Result<Vec<u8>, HostError> {
    let command = AuthCommand {
        direction: AuthDirection::Receive,
        length: RECEIVE_LEN as u32,
    }
    .to_command(0);
    queue
        .execute(command, &[], RECEIVE_LEN, what)
        .map(|(_, data)| data)
}
