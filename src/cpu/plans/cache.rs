//! The plan cache on disk: one JSON file shared by every run on the machine, keyed by machine
//! (CPU model, SIMD path, threads, kernel version) and job (types and shapes), merged under a
//! lock and replaced whole.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::search::{Choice, SHORT_BATCH_MAX};
use crate::atomic_file;
use crate::cpu::features::cpu_features;
use crate::cpu::matmul::WeightMatrix;

/// The job: every matrix's type and shape, and decode or batch.
pub fn job_key(ws: &[WeightMatrix<'_>], n_tokens: usize) -> String {
    let mats: Vec<String> = ws
        .iter()
        .map(|w| format!("{}:{}x{}", w.ty, w.rows, w.cols))
        .collect();
    let class = match n_tokens {
        1 => "decode",
        n if n <= SHORT_BATCH_MAX => "short",
        _ => "batch",
    };
    format!("{} {class}", mats.join("+"))
}

/// Bumped when the kernels or the search change enough that plans chosen before no longer hold.
const KERNELS_VERSION: u32 = 16;

/// CPU model, SIMD path and threads: a plan timed elsewhere says nothing about this machine.
/// (The read-bandwidth cache keys its figures the same way.)
pub(crate) fn machine_key(threads: usize) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    // Tiles granted or not change which plans exist (the OS may refuse them in one run).
    #[cfg(target_arch = "x86_64")]
    let amx = if crate::cpu::dot::panel::amx::usable() {
        " + amx"
    } else {
        ""
    };
    #[cfg(not(target_arch = "x86_64"))]
    let amx = "";
    format!(
        "{model} | {}{amx} | {threads} threads | kernels v{KERNELS_VERSION}",
        cpu_features().best()
    )
}

/// The cache file as JSON (a missing file: an empty cache). Entries stay JSON values, so that
/// writing the file back keeps what this build cannot read (another version's plans) as it was.
fn read_cache(path: &Path) -> Result<Value, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"{}".to_vec(),
        Err(e) => return Err(e.to_string()),
    };
    let mut file: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if machines(&mut file).is_none() {
        return Err("not a plan cache: no \"machines\" object".to_string());
    }
    Ok(file)
}

/// The file's `machines` object, created in an empty object.
fn machines(file: &mut Value) -> Option<&mut Map<String, Value>> {
    let top = file.as_object_mut()?;
    top.entry("machines")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// Holds an exclusive lock on `<path>.lock` until dropped (`None` where the file system cannot
/// lock: the save goes ahead, and a concurrent save may then cost an entry a new search).
fn lock(path: &Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("json.lock"))
        .ok()?;
    file.lock().ok()?;
    Some(file)
}

/// This machine's cached choices in the file at `path` (a missing or unreadable file, or an
/// entry this build cannot read: nothing for it).
pub fn load(path: &Path, machine: &str) -> BTreeMap<String, Choice> {
    read_cache(path)
        .ok()
        .and_then(|mut file| machines(&mut file)?.remove(machine))
        .and_then(|jobs| match jobs {
            Value::Object(jobs) => Some(jobs),
            _ => None,
        })
        .map(|jobs| {
            jobs.into_iter()
                .filter_map(|(k, v)| Some((k, serde_json::from_value::<Choice>(v).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Adds `choices` to `machine`'s entries in the file at `path`, under the lock, and replaces the
/// file whole (other runs may be saving at the same moment). A file that does not parse is left
/// as it is, with a warning: overwriting it would drop every other machine's plans.
pub fn merge(path: &Path, machine: &str, choices: &[(&String, &Choice)]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let _lock = lock(path);
    let mut file = match read_cache(path) {
        Ok(file) => file,
        Err(e) => {
            crate::errln!(
                "warning: the kernel-plan cache {} cannot be read ({e}); it was left as it is and \
                 this run's plans were not saved (delete it to start a new one)",
                path.display()
            );
            return;
        }
    };
    let Some(machines) = machines(&mut file) else {
        return;
    };
    let jobs = machines
        .entry(machine.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !jobs.is_object() {
        *jobs = Value::Object(Map::new());
    }
    if let Some(jobs) = jobs.as_object_mut() {
        for (key, choice) in choices {
            if let Ok(v) = serde_json::to_value(choice) {
                jobs.insert((*key).clone(), v);
            }
        }
    }
    if let Ok(json) = serde_json::to_vec_pretty(&file) {
        let _ = atomic_file::write_bytes(path, &json);
    }
}
