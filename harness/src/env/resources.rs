//! Whether this machine has room for the labs a run is about to start: memory for their containers,
//! disk for Docker's data and for the run folder. A run that cannot fit refuses to start, saying what
//! it found, what it needs and how to make room, instead of failing half-way with a lab half up.

use std::path::{Path, PathBuf};

/// Memory one lab takes here: Postgres with its buffers, a service replica, Redis and the proxy, with
/// room for a large data set (measured: ~300 MiB with the 200,000 orders of missing-index).
pub const MEMORY_PER_LAB: u64 = 512 * MIB;
/// Docker disk one lab takes: its containers' writable layers and Postgres's data directory.
pub const DOCKER_DISK_PER_LAB: u64 = 1024 * MIB;
/// A run folder's charts, time series and goose reports.
pub const RUN_FOLDER_DISK: u64 = 100 * MIB;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "not enough memory for {labs} lab(s): {} MiB available, {} MiB needed ({} MiB a lab); \
         stop other containers or programs, or run one variant at a time (--variant)",
        available / MIB, needed / MIB, MEMORY_PER_LAB / MIB
    )]
    Memory { labs: u32, available: u64, needed: u64 },
    #[error(
        "not enough disk at {} for {what}: {} MiB free, {} MiB needed; free some (`docker system prune` \
         removes stopped containers and unused images)",
        path.display(), available / MIB, needed / MIB
    )]
    Disk {
        what: &'static str,
        path: PathBuf,
        available: u64,
        needed: u64,
    },
    #[error("cannot tell how much {what} is free at {}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Memory the kernel says can be given to new processes without swapping (`MemAvailable`).
fn available_memory() -> Result<u64, ResourceError> {
    let unreadable = |source| ResourceError::Unreadable {
        what: "memory",
        path: PathBuf::from("/proc/meminfo"),
        source,
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(unreadable)?;
    parse_available(&meminfo).ok_or_else(|| unreadable(std::io::Error::other("no MemAvailable line")))
}

fn parse_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free space for an unprivileged writer on the file system holding `path` (or its nearest parent
/// that exists: a run folder may not be made yet).
fn free_disk(path: &Path) -> Result<u64, ResourceError> {
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let stats = nix::sys::statvfs::statvfs(existing).map_err(|errno| ResourceError::Unreadable {
        what: "disk",
        path: existing.to_owned(),
        source: std::io::Error::from(errno),
    })?;
    Ok(stats.blocks_available() * stats.fragment_size())
}

/// Checks there is room for `labs` labs, Docker's data under `docker_root`, and a run folder under
/// `out`.
pub fn check(labs: u32, docker_root: &Path, out: &Path) -> Result<(), ResourceError> {
    let needed = u64::from(labs) * MEMORY_PER_LAB;
    let available = available_memory()?;
    if available < needed {
        return Err(ResourceError::Memory {
            labs,
            available,
            needed,
        });
    }
    for (what, path, needed) in [
        (
            "Docker's data",
            docker_root,
            u64::from(labs) * DOCKER_DISK_PER_LAB,
        ),
        ("the run folder", out, RUN_FOLDER_DISK),
    ] {
        let available = free_disk(path)?;
        if available < needed {
            return Err(ResourceError::Disk {
                what,
                path: path.to_owned(),
                available,
                needed,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_meminfo_and_a_shortfall_names_the_figures_and_the_fix() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2097152 kB\n";
        assert_eq!(parse_available(meminfo), Some(2 * 1024 * MIB));
        assert_eq!(parse_available("MemTotal: 1 kB\n"), None);
        let error = ResourceError::Memory {
            labs: 2,
            available: 300 * MIB,
            needed: 1024 * MIB,
        }
        .to_string();
        assert_eq!(
            error,
            "not enough memory for 2 lab(s): 300 MiB available, 1024 MiB needed (512 MiB a lab); \
             stop other containers or programs, or run one variant at a time (--variant)"
        );
    }

    #[test]
    fn free_disk_is_read_for_a_folder_not_made_yet() {
        let deep = std::env::temp_dir().join("fortress-no-such-dir/a/b");
        assert!(free_disk(&deep).unwrap() > 0);
        assert!(
            check(1, Path::new("/"), &deep).is_ok(),
            "this machine has room for one lab"
        );
        let error = check(1_000_000, Path::new("/"), &deep).unwrap_err();
        assert!(
            matches!(error, ResourceError::Memory { labs: 1_000_000, .. }),
            "{error}"
        );
    }
}
