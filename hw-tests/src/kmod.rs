//! Kernel modules for the guest: finds them in an unpacked kernel package and orders them by
//! their dependencies.
//!
//! A `dpkg-deb -x`'d kernel has no `modules.dep` (depmod runs in the package's postinst), so
//! dependencies are read from each module's own `.modinfo` ELF section (`depends=a,b`), the
//! same place depmod takes them from.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{HarnessError, Result};
use crate::host;

/// A module to load in the guest, in load order.
#[derive(Debug, Clone)]
pub struct GuestModule {
    /// Canonical name (underscores), as in `/sys/module`.
    pub name: String,
    /// File name inside the guest's module directory, e.g. `vfio_pci.ko`.
    pub file_name: String,
    /// The uncompressed module.
    pub contents: Vec<u8>,
}

/// Module names use `-` and `_` interchangeably; the kernel shows underscores.
pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Every module file below `modules_dir/kernel`, by canonical name.
fn index_modules(modules_dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut pending = vec![modules_dir.join("kernel")];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| HarnessError::io("listing", &dir, e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| HarnessError::io("listing", &dir, e))?
                .path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let file_name = path.file_name().unwrap_or_default().to_string_lossy();
            let stem = file_name
                .strip_suffix(".ko")
                .or_else(|| file_name.strip_suffix(".ko.xz"));
            if let Some(stem) = stem {
                index.insert(canonical_name(stem), path.clone());
            }
        }
    }
    Ok(index)
}

/// Names of modules built into the kernel image, which need (and have) no file.
fn builtin_modules(modules_dir: &Path) -> Result<HashSet<String>> {
    let path = modules_dir.join("modules.builtin");
    let text = std::fs::read_to_string(&path).map_err(|e| HarnessError::io("reading", &path, e))?;
    Ok(text
        .lines()
        .filter_map(|line| line.rsplit('/').next())
        .filter_map(|file| file.strip_suffix(".ko"))
        .map(canonical_name)
        .collect())
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|ext| ext == "xz") {
        let xz = host::find_program("xz", "apt-get install xz-utils")?;
        Ok(host::run(Command::new(xz).arg("-dc").arg(path))?.stdout)
    } else {
        std::fs::read(path).map_err(|e| HarnessError::io("reading", path, e))
    }
}

/// Resolves `wanted` (in the order given) plus everything they depend on into a load order:
/// dependencies first, otherwise the caller's order. Built-in modules are left out.
pub fn resolve_load_order(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<GuestModule>> {
    let index = index_modules(modules_dir)?;
    let builtin = builtin_modules(modules_dir)?;
    let mut ordered = Vec::new();
    let mut placed = HashSet::new();
    for name in wanted {
        place(
            &canonical_name(name),
            &index,
            &builtin,
            &mut placed,
            &mut Vec::new(),
            &mut ordered,
        )?;
    }
    Ok(ordered)
}

/// Depth-first post-order placement: a module goes after all of its dependencies.
fn place(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    builtin: &HashSet<String>,
    placed: &mut HashSet<String>,
    visiting: &mut Vec<String>,
    ordered: &mut Vec<GuestModule>,
) -> Result<()> {
    if placed.contains(name) || builtin.contains(name) {
        return Ok(());
    }
    if visiting.iter().any(|seen| seen == name) {
        return Err(HarnessError::Module {
            module: name.to_owned(),
            reason: format!("dependency cycle through {}", visiting.join(" -> ")),
        });
    }
    let path = index.get(name).ok_or_else(|| HarnessError::Module {
        module: name.to_owned(),
        reason: "no such module in the guest kernel package (is it =y, or misspelt?)".to_owned(),
    })?;
    let contents = read_module(path)?;
    let depends = modinfo_value(&contents, "depends").map_err(|reason| HarnessError::Module {
        module: name.to_owned(),
        reason,
    })?;
    visiting.push(name.to_owned());
    for dependency in depends.iter().flat_map(|list| list.split(',')) {
        if !dependency.is_empty() {
            place(
                &canonical_name(dependency),
                index,
                builtin,
                placed,
                visiting,
                ordered,
            )?;
        }
    }
    visiting.pop();
    placed.insert(name.to_owned());
    ordered.push(GuestModule {
        name: name.to_owned(),
        file_name: format!("{name}.ko"),
        contents,
    });
    Ok(())
}

/// Reads `key=value` from the `.modinfo` section of an ELF64 little-endian module.
fn modinfo_value(elf: &[u8], key: &str) -> Result<Option<String>, String> {
    let section = modinfo_section(elf)?;
    let prefix = format!("{key}=");
    Ok(section
        .split(|&byte| byte == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(prefix.as_str()))
        .map(str::to_owned))
}

fn modinfo_section(elf: &[u8]) -> Result<&[u8], String> {
    const ELFCLASS64: u8 = 2;
    const ELFDATA2LSB: u8 = 1;
    const SECTION_HEADER_SIZE: usize = 64;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != ELFCLASS64 || elf[5] != ELFDATA2LSB {
        return Err("not a 64-bit little-endian ELF module".to_owned());
    }
    let u16_at = |offset: usize| -> Result<usize, String> {
        elf.get(offset..offset + 2)
            .map(|bytes| usize::from(u16::from_le_bytes([bytes[0], bytes[1]])))
            .ok_or_else(|| "truncated ELF".to_owned())
    };
    let u64_at = |offset: usize| -> Result<usize, String> {
        let bytes: [u8; 8] = elf
            .get(offset..offset + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| "truncated ELF".to_owned())?;
        usize::try_from(u64::from_le_bytes(bytes)).map_err(|_| "ELF offset too large".to_owned())
    };
    let u32_at = |offset: usize| -> Result<usize, String> {
        let bytes: [u8; 4] = elf
            .get(offset..offset + 4)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| "truncated ELF".to_owned())?;
        usize::try_from(u32::from_le_bytes(bytes)).map_err(|_| "ELF offset too large".to_owned())
    };
    let section_headers = u64_at(0x28)?;
    let section_count = u16_at(0x3c)?;
    let names_index = u16_at(0x3e)?;
    let header = |index: usize| section_headers + index * SECTION_HEADER_SIZE;
    let names_offset = u64_at(header(names_index) + 0x18)?;
    for index in 0..section_count {
        let name_offset = names_offset + u32_at(header(index))?;
        let name = elf
            .get(name_offset..)
            .and_then(|rest| rest.split(|&byte| byte == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            let offset = u64_at(header(index) + 0x18)?;
            let size = u64_at(header(index) + 0x20)?;
            return elf
                .get(offset..offset + size)
                .ok_or_else(|| "truncated .modinfo section".to_owned());
        }
    }
    Err("no .modinfo section".to_owned())
}
