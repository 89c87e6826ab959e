//! A collection as one zip, streamed straight to the client: no temp file, memory
//! bounded by one chunk plus the central directory.
//!
//! Entries are stored (not compressed: most school documents — docx, pdf, jpg — are
//! compressed already). Each version is read twice: once to compute its CRC-32, then to
//! send it after a local header that carries the real CRC and sizes. That costs a second
//! read (usually from the page cache) but gives the plainest zip there is: no data
//! descriptors, which some readers mishandle for stored entries. Zip64 is not written;
//! instead a collection must fit in 4 GiB and 65 535 entries ([`ZipPlan::new`] refuses
//! larger ones before the first byte is sent; `ects collect` has no such limit).

use std::io::{self, Read, Seek, SeekFrom, Write};

use chrono::{DateTime, Datelike, Local, Timelike, Utc};

use crate::names::{RelPath, UserName};
use crate::store::{Store, VersionInfo};

/// Most entries a zip without zip64 can list.
pub const MAX_ENTRIES: usize = 65_535;
/// Largest archive a zip without zip64 can address.
pub const MAX_ARCHIVE_BYTES: u64 = u32::MAX as u64;

const LOCAL_HEADER: u64 = 30;
const CENTRAL_HEADER: u64 = 46;
const END_RECORD: u64 = 22;
/// The extended-timestamp extra field (0x5455): exact UTC mtime for unzip tools.
const TIME_EXTRA: u64 = 9;
/// Bit 11: names are UTF-8.
const FLAG_UTF8: u16 = 0x0800;

/// One version to put in the zip.
#[derive(Debug, Clone)]
pub struct ZipSource {
    pub user: UserName,
    pub path: RelPath,
    pub version: VersionInfo,
}

impl ZipSource {
    fn name(&self) -> String {
        format!("{}/{}", self.user, self.path)
    }
}

/// Everything that goes into one zip, checked to fit.
#[derive(Debug)]
pub struct ZipPlan {
    size: u64,
    manifest: Vec<u8>,
    manifest_time: DateTime<Utc>,
    sources: Vec<ZipSource>,
}

/// Why a collection cannot be one zip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipTooLarge {
    #[error(
        "the collection has {0} files, more than one zip can hold ({MAX_ENTRIES}); use `ects collect` or a narrower pattern"
    )]
    Entries(usize),
    #[error(
        "the collection would be {0} bytes, more than the 4 GiB one zip can hold here; use `ects collect` or a narrower pattern"
    )]
    Bytes(u64),
}

impl ZipPlan {
    /// Plans a zip of `manifest.csv` followed by every source under `<user>/<path>`.
    pub fn new(
        manifest: Vec<u8>,
        manifest_time: DateTime<Utc>,
        sources: Vec<ZipSource>,
    ) -> Result<Self, ZipTooLarge> {
        if sources.len() + 1 > MAX_ENTRIES {
            return Err(ZipTooLarge::Entries(sources.len()));
        }
        let entry = |name_len: u64, size: u64| {
            LOCAL_HEADER + CENTRAL_HEADER + 2 * (name_len + TIME_EXTRA) + size
        };
        let mut total = END_RECORD + entry("manifest.csv".len() as u64, manifest.len() as u64);
        for s in &sources {
            total = total.saturating_add(entry(s.name().len() as u64, s.version.size));
        }
        if total > MAX_ARCHIVE_BYTES {
            return Err(ZipTooLarge::Bytes(total));
        }
        Ok(Self {
            size: total,
            manifest,
            manifest_time,
            sources,
        })
    }

    /// The archive's exact size in bytes (its `Content-Length`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes the whole zip to `out` (blocking: reads the store).
    pub fn write(&self, store: &dyn Store, out: &mut dyn Write) -> io::Result<()> {
        let mut zip = Writer {
            out,
            offset: 0,
            central: Vec::new(),
            entries: 0,
        };
        let manifest_crc = crc32(0, &self.manifest);
        zip.entry(
            "manifest.csv",
            self.manifest_time,
            manifest_crc,
            self.manifest.len() as u64,
            &mut &self.manifest[..],
        )?;
        for source in &self.sources {
            let (_, mut reader) = store
                .open(&source.user, &source.path, &source.version.sha256)
                .map_err(io::Error::other)?;
            let size = source.version.size;
            let crc = crc_of(&mut reader, size)?;
            reader.seek(SeekFrom::Start(0))?;
            zip.entry(
                &source.name(),
                source.version.stored_at,
                crc,
                size,
                &mut reader.take(size),
            )?;
        }
        zip.finish()
    }
}

struct Writer<'a> {
    out: &'a mut dyn Write,
    offset: u64,
    central: Vec<u8>,
    entries: u16,
}

impl Writer<'_> {
    fn entry(
        &mut self,
        name: &str,
        time: DateTime<Utc>,
        crc: u32,
        size: u64,
        body: &mut dyn Read,
    ) -> io::Result<()> {
        let size32 = u32::try_from(size).map_err(|_| too_big())?;
        let offset32 = u32::try_from(self.offset).map_err(|_| too_big())?;
        let (dos_time, dos_date) = dos_time(time);
        let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
        let extra = time_extra(time);

        let mut local = Vec::with_capacity(LOCAL_HEADER as usize + name.len() + extra.len());
        put32(&mut local, 0x0403_4b50);
        put16(&mut local, 20); // version needed: 2.0
        put16(&mut local, FLAG_UTF8);
        put16(&mut local, 0); // stored
        put16(&mut local, dos_time);
        put16(&mut local, dos_date);
        put32(&mut local, crc);
        put32(&mut local, size32);
        put32(&mut local, size32);
        put16(&mut local, name_len);
        put16(&mut local, extra.len() as u16);
        local.extend_from_slice(name.as_bytes());
        local.extend_from_slice(&extra);
        self.out.write_all(&local)?;
        let copied = io::copy(body, self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a stored version is shorter than its size",
            ));
        }

        let c = &mut self.central;
        put32(c, 0x0201_4b50);
        put16(c, 0x031e); // made by: Unix, spec 3.0 (so the mode below counts)
        put16(c, 20);
        put16(c, FLAG_UTF8);
        put16(c, 0);
        put16(c, dos_time);
        put16(c, dos_date);
        put32(c, crc);
        put32(c, size32);
        put32(c, size32);
        put16(c, name_len);
        put16(c, extra.len() as u16);
        put16(c, 0); // comment
        put16(c, 0); // disk
        put16(c, 0); // internal attributes
        put32(c, 0o100644 << 16); // a regular file, rw-r--r--
        put32(c, offset32);
        c.extend_from_slice(name.as_bytes());
        c.extend_from_slice(&extra);

        self.offset += local.len() as u64 + size;
        self.entries = self.entries.checked_add(1).ok_or_else(too_big)?;
        Ok(())
    }

    fn finish(self) -> io::Result<()> {
        let mut end = Vec::with_capacity(END_RECORD as usize);
        put32(&mut end, 0x0605_4b50);
        put16(&mut end, 0);
        put16(&mut end, 0);
        put16(&mut end, self.entries);
        put16(&mut end, self.entries);
        put32(
            &mut end,
            u32::try_from(self.central.len()).map_err(|_| too_big())?,
        );
        put32(&mut end, u32::try_from(self.offset).map_err(|_| too_big())?);
        put16(&mut end, 0);
        self.out.write_all(&self.central)?;
        self.out.write_all(&end)?;
        self.out.flush()
    }
}

fn too_big() -> io::Error {
    io::Error::other("the zip outgrew the limits it was planned for")
}

fn put16(v: &mut Vec<u8>, n: u16) {
    v.extend_from_slice(&n.to_le_bytes());
}

fn put32(v: &mut Vec<u8>, n: u32) {
    v.extend_from_slice(&n.to_le_bytes());
}

/// MS-DOS time and date, in the server's local time (what unzip tools assume); clamped
/// to the format's 1980–2107 range.
fn dos_time(t: DateTime<Utc>) -> (u16, u16) {
    let local = t.with_timezone(&Local);
    let year = local.year().clamp(1980, 2107) as u16;
    let time = ((local.hour() as u16) << 11)
        | ((local.minute() as u16) << 5)
        | (local.second() as u16 / 2);
    let date = ((year - 1980) << 9) | ((local.month() as u16) << 5) | local.day() as u16;
    (time, date)
}

fn time_extra(t: DateTime<Utc>) -> Vec<u8> {
    let secs = t.timestamp().clamp(0, i64::from(u32::MAX)) as u32;
    let mut v = Vec::with_capacity(TIME_EXTRA as usize);
    put16(&mut v, 0x5455);
    put16(&mut v, 5);
    v.push(1); // flags: modification time present
    put32(&mut v, secs);
    v
}

fn crc_of(reader: &mut dyn Read, size: u64) -> io::Result<u32> {
    let mut crc = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "a stored version is shorter than its size",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        crc = crc32(crc, &buf[..n]);
        left -= n as u64;
    }
    Ok(crc)
}

/// CRC-32 (IEEE, as zip uses), continuing from `crc` (0 to start). Slicing by 8 bytes
/// keeps it fast enough to run before sending each version.
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let t = &*TABLES;
    let mut crc = !crc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

static TABLES: std::sync::LazyLock<[[u32; 256]; 8]> = std::sync::LazyLock::new(|| {
    let mut t = [[0u32; 256]; 8];
    for (i, slot) in t[0].iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    for i in 0..256 {
        for k in 1..8 {
            let prev = t[k - 1][i];
            t[k][i] = t[0][(prev & 0xff) as usize] ^ (prev >> 8);
        }
    }
    t
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn crc_known_values() {
        assert_eq!(crc32(0, b""), 0);
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = crc32(0, &data);
        let (a, b) = data.split_at(333);
        assert_eq!(crc32(crc32(0, a), b), whole, "continues across chunks");
        let bytewise = data.iter().fold(!0u32, |crc, &b| {
            TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
        });
        assert_eq!(!bytewise, whole);
    }

    #[test]
    fn limits() {
        let source = |size| ZipSource {
            user: UserName::parse("a").unwrap(),
            path: RelPath::parse("b").unwrap(),
            version: VersionInfo {
                sha256: crate::store::Digest::of(b""),
                size,
                stored_at: Utc::now(),
            },
        };
        assert!(ZipPlan::new(vec![], Utc::now(), vec![source(1 << 20)]).is_ok());
        assert!(matches!(
            ZipPlan::new(vec![], Utc::now(), vec![source(u32::MAX as u64)]),
            Err(ZipTooLarge::Bytes(_))
        ));
        assert!(matches!(
            ZipPlan::new(vec![], Utc::now(), vec![source(1); MAX_ENTRIES]),
            Err(ZipTooLarge::Entries(_))
        ));
    }

    /// Writes a zip and reads it back with `unzip` (Info-ZIP), an independent reader,
    /// when it is installed.
    #[test]
    fn unzip_reads_it() {
        let store = MemStore::new();
        let user = UserName::parse("alice").unwrap();
        let path = RelPath::parse("Docs/Übung, \"1\".txt").unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let version = store
            .put(&user, &path, &mut &body[..], u64::MAX, None)
            .unwrap()
            .version;
        let plan = ZipPlan::new(
            b"manifest\r\n".to_vec(),
            Utc::now(),
            vec![ZipSource {
                user,
                path,
                version,
            }],
        )
        .unwrap();
        let mut zip = Vec::new();
        plan.write(&store, &mut zip).unwrap();
        assert_eq!(&zip[..4], b"PK\x03\x04");
        assert_eq!(zip.len() as u64, plan.size(), "the planned size is exact");

        let Ok(status) = std::process::Command::new("unzip").arg("-v").output() else {
            eprintln!("SKIPPED: unzip is not installed");
            return;
        };
        assert!(status.status.success());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.zip");
        std::fs::write(&file, &zip).unwrap();
        let out = std::process::Command::new("unzip")
            .arg("-q")
            .arg(&file)
            .arg("-d")
            .arg(dir.path().join("x"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let got = std::fs::read(dir.path().join("x/alice/Docs/Übung, \"1\".txt")).unwrap();
        assert_eq!(got, body);
        let manifest = std::fs::read(dir.path().join("x/manifest.csv")).unwrap();
        assert_eq!(manifest, b"manifest\r\n");
    }
}
