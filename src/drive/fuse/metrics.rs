//! How many requests of each kind the kernel sent and how long the drive took to answer
//! them, like mountpoint-s3's per-operation metrics: two relaxed atomic adds per request,
//! logged at debug level (`ects -v mount`) when the drive unmounts. Without debug
//! logging nothing is timed or counted: the hot path pays one branch. Tells where the time
//! of a workload goes (see docs/BENCHMARKS.md, "Small files").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One kind of FUSE request. `GetxattrCapability` is the kernel's `security.capability`
/// question, counted apart from other `getxattr` calls because it costs a round trip
/// per write unless the kernel can skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Create,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Fsyncdir,
    Statfs,
    Setxattr,
    Getxattr,
    GetxattrCapability,
    Listxattr,
    Removexattr,
    Fallocate,
}

const OPS: [(Op, &str); 31] = [
    (Op::Lookup, "lookup"),
    (Op::Forget, "forget"),
    (Op::Getattr, "getattr"),
    (Op::Setattr, "setattr"),
    (Op::Readlink, "readlink"),
    (Op::Mknod, "mknod"),
    (Op::Mkdir, "mkdir"),
    (Op::Unlink, "unlink"),
    (Op::Rmdir, "rmdir"),
    (Op::Symlink, "symlink"),
    (Op::Rename, "rename"),
    (Op::Link, "link"),
    (Op::Open, "open"),
    (Op::Create, "create"),
    (Op::Read, "read"),
    (Op::Write, "write"),
    (Op::Flush, "flush"),
    (Op::Release, "release"),
    (Op::Fsync, "fsync"),
    (Op::Opendir, "opendir"),
    (Op::Readdir, "readdir"),
    (Op::Readdirplus, "readdirplus"),
    (Op::Releasedir, "releasedir"),
    (Op::Fsyncdir, "fsyncdir"),
    (Op::Statfs, "statfs"),
    (Op::Setxattr, "setxattr"),
    (Op::Getxattr, "getxattr"),
    (Op::GetxattrCapability, "getxattr(security.capability)"),
    (Op::Listxattr, "listxattr"),
    (Op::Removexattr, "removexattr"),
    (Op::Fallocate, "fallocate"),
];

/// Count and total time of one kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpTotal {
    pub name: &'static str,
    pub count: u64,
    pub nanos: u64,
}

/// Counters for every [`Op`], shared by the session's threads.
pub struct OpStats {
    /// Off unless this module logs at debug level: nobody would read the numbers.
    enabled: bool,
    count: [AtomicU64; OPS.len()],
    nanos: [AtomicU64; OPS.len()],
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            enabled: true,
            count: std::array::from_fn(|_| AtomicU64::new(0)),
            nanos: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Times one request from its start until it is dropped (after the reply is sent).
pub struct Timed<'a> {
    stats: &'a OpStats,
    op: Op,
    start: Instant,
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.record(self.op, nanos);
    }
}

impl OpStats {
    /// Counters that run only when their debug line will be logged at unmount.
    pub fn for_log_level() -> Self {
        Self {
            enabled: tracing::enabled!(tracing::Level::DEBUG),
            ..Self::default()
        }
    }

    /// Starts timing a request of kind `op`; keep the guard alive until after the
    /// reply. `None` (nothing to do) when the counters are off.
    pub fn time(&self, op: Op) -> Option<Timed<'_>> {
        self.enabled.then(|| Timed {
            stats: self,
            op,
            start: Instant::now(),
        })
    }

    fn record(&self, op: Op, nanos: u64) {
        let i = op as usize;
        self.count[i].fetch_add(1, Ordering::Relaxed);
        self.nanos[i].fetch_add(nanos, Ordering::Relaxed);
    }

    /// The kinds of request seen so far, most frequent first.
    pub fn totals(&self) -> Vec<OpTotal> {
        let mut all: Vec<OpTotal> = OPS
            .iter()
            .map(|&(op, name)| OpTotal {
                name,
                count: self.count[op as usize].load(Ordering::Relaxed),
                nanos: self.nanos[op as usize].load(Ordering::Relaxed),
            })
            .filter(|t| t.count > 0)
            .collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(b.name)));
        all
    }

    /// One debug line per kind of request: count, total and mean time in the drive.
    pub fn log(&self) {
        for t in self.totals() {
            tracing::debug!(
                op = t.name,
                count = t.count,
                total_ms = t.nanos / 1_000_000,
                mean_us = t.nanos / t.count / 1_000,
                "fuse requests"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_its_own_slot_and_name() {
        for (i, (op, _)) in OPS.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?} is out of order in OPS");
        }
    }

    #[test]
    fn counters_that_are_off_count_nothing() {
        let s = OpStats {
            enabled: false,
            ..OpStats::default()
        };
        assert!(s.time(Op::Lookup).is_none());
        assert!(s.totals().is_empty());
    }

    #[test]
    fn counts_and_times_each_kind_apart_most_frequent_first() {
        let s = OpStats::default();
        s.record(Op::Lookup, 10);
        s.record(Op::Create, 5);
        s.record(Op::Lookup, 30);
        drop(s.time(Op::GetxattrCapability));
        let t = s.totals();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t[0],
            OpTotal {
                name: "lookup",
                count: 2,
                nanos: 40
            }
        );
        assert_eq!(t[1].name, "create");
        assert_eq!(t[2].name, "getxattr(security.capability)");
        assert_eq!(t[2].count, 1);
    }
}
