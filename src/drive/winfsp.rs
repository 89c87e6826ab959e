//! The WinFsp adapter (Windows only): maps WinFsp's file-system callbacks onto the
//! platform-neutral [`Drive`] core, the way [`fuse`](super) maps the Linux kernel's.
//!
//! Written against the `winfsp` crate 0.13 (its `FileSystemContext` trait and
//! `FileSystemHost`) and WinFsp's documentation; on Linux it is type-checked with
//! clippy for `x86_64-pc-windows-msvc`, and the GitHub Windows job builds and runs it.
//! Everything Windows-specific that is not a WinFsp call (name rules,
//! case-insensitive lookup, hidden entries) lives in
//! [`windows_names`](super::core::windows_names) and is tested there.
//!
//! - The adapter only translates: everything it decides with is in the core, tested
//!   on Linux. Paths arrive whole (`\dir\file.txt`) and go to the core's walker
//!   ([`Drive::walk`], [`Drive::walk_parent`]: Windows' name rules, case-insensitive
//!   matching that keeps the case a file was created with); its lookups are forgotten
//!   when the walk is dropped, or at `close` for the one a handle keeps. Folder
//!   listings come with attributes ([`Drive::list_dir`]), appends and paging writes
//!   are [`Drive::write_at`], allocation sizes [`Drive::set_allocation`], opens with more access than the file allows fall back to
//!   read-only ([`Drive::open_for`]), and [`Drive::may_delete`] says what may go.
//! - A version is taken at `cleanup` (the application's `CloseHandle`, which it waits
//!   for: SPEC §4 rule a) through [`Drive::flush`]; `close` releases the handle.
//!   `flush_and_purge_on_cleanup` makes WinFsp write cached data before `cleanup`.
//! - Delete-on-close: WinFsp's driver tracks the delete disposition across handles and
//!   sets `FspCleanupDelete` on the last cleanup; the name is removed then, before the
//!   version decision, so a deleted temp file is never versioned. `set_delete` only
//!   asks the core whether the delete may happen.
//! - Renames map to [`Drive::rename`] with `RENAME_NOREPLACE` unless WinFsp says
//!   `replace_if_exists` (Office's and `MoveFileEx`'s save-by-rename).
//! - `.versions` and Office's `~$` owner files carry FILE_ATTRIBUTE_HIDDEN
//!   ([`windows_names::is_hidden`]); read-only entries carry FILE_ATTRIBUTE_READONLY.
//! - Security: one fixed descriptor for every entry (SYSTEM, Administrators and
//!   Everyone may do anything, like WinFsp's memfs sample); changes are accepted and
//!   not kept, so programs that copy ACLs onto a saved file (Office) do not fail.

use std::ffi::{OsStr, OsString, c_void};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use winfsp::constants::FspCleanupFlags;
use winfsp::filesystem::{
    DirBuffer, DirInfo, DirMarker, FileInfo, FileSecurity, FileSystemContext,
    ModificationDescriptor, OpenFileInfo, VolumeInfo, WideNameInfo,
};
use winfsp::host::{FileSystemHost, VolumeParams};
use winfsp::{FspError, U16CStr};

use super::core::windows_names;
use super::core::{Attr, Drive, DriveError, FileKind, PathError, ROOT, SetAttr, SetTime};
use super::core::{Fh, Ino, Walk, WriteAt, attr, posix};

// NTSTATUS values (ntstatus.h), so this file needs no `windows` crate types.
const STATUS_BUFFER_OVERFLOW: i32 = 0x8000_0005_u32 as i32;
const STATUS_INVALID_HANDLE: i32 = 0xC000_0008_u32 as i32;
const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
const STATUS_END_OF_FILE: i32 = 0xC000_0011_u32 as i32;
const STATUS_ACCESS_DENIED: i32 = 0xC000_0022_u32 as i32;
const STATUS_OBJECT_NAME_INVALID: i32 = 0xC000_0033_u32 as i32;
const STATUS_OBJECT_NAME_NOT_FOUND: i32 = 0xC000_0034_u32 as i32;
const STATUS_OBJECT_NAME_COLLISION: i32 = 0xC000_0035_u32 as i32;
const STATUS_OBJECT_PATH_NOT_FOUND: i32 = 0xC000_003A_u32 as i32;
const STATUS_SHARING_VIOLATION: i32 = 0xC000_0043_u32 as i32;
const STATUS_QUOTA_EXCEEDED: i32 = 0xC000_0044_u32 as i32;
const STATUS_DISK_FULL: i32 = 0xC000_007F_u32 as i32;
const STATUS_MEDIA_WRITE_PROTECTED: i32 = 0xC000_00A2_u32 as i32;
const STATUS_FILE_IS_A_DIRECTORY: i32 = 0xC000_00BA_u32 as i32;
const STATUS_NOT_SUPPORTED: i32 = 0xC000_00BB_u32 as i32;
const STATUS_NOT_SAME_DEVICE: i32 = 0xC000_00D4_u32 as i32;
const STATUS_UNEXPECTED_IO_ERROR: i32 = 0xC000_00E9_u32 as i32;
const STATUS_DIRECTORY_NOT_EMPTY: i32 = 0xC000_0101_u32 as i32;
const STATUS_NOT_A_DIRECTORY: i32 = 0xC000_0103_u32 as i32;
const STATUS_NETWORK_UNREACHABLE: i32 = 0xC000_023C_u32 as i32;

// File attributes and access rights (winnt.h).
const FILE_ATTRIBUTE_READONLY: u32 = 0x0001;
const FILE_ATTRIBUTE_HIDDEN: u32 = 0x0002;
const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x0010;
const FILE_ATTRIBUTE_ARCHIVE: u32 = 0x0020;
const INVALID_FILE_ATTRIBUTES: u32 = u32::MAX;
const FILE_WRITE_DATA: u32 = 0x0002;
const FILE_APPEND_DATA: u32 = 0x0004;
const GENERIC_WRITE: u32 = 0x4000_0000;
const GENERIC_ALL: u32 = 0x1000_0000;
// CreateOptions (ntifs.h).
const FILE_DIRECTORY_FILE: u32 = 0x0000_0001;

/// 100 ns ticks between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;
const ALLOCATION_UNIT: u64 = 4096;
/// Office, Explorer and `dir` see this as the file system's name.
const FILESYSTEM_NAME: &str = "ects";

/// Owner and group Administrators; SYSTEM, Administrators and Everyone have full
/// access; protected from inheritance (WinFsp memfs's default root descriptor).
const SDDL: &str = "O:BAG:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;WD)";

fn nt(status: i32) -> FspError {
    FspError::NTSTATUS(status)
}

/// The NTSTATUS a Windows program expects for a core error.
fn status_of(e: DriveError) -> FspError {
    let status = match e.errno() {
        posix::ENOENT | posix::ENODATA => STATUS_OBJECT_NAME_NOT_FOUND,
        posix::EEXIST => STATUS_OBJECT_NAME_COLLISION,
        posix::EROFS => STATUS_MEDIA_WRITE_PROTECTED,
        posix::EACCES | posix::EPERM => STATUS_ACCESS_DENIED,
        posix::EINVAL => STATUS_INVALID_PARAMETER,
        posix::ENAMETOOLONG => STATUS_OBJECT_NAME_INVALID,
        posix::ENOTDIR => STATUS_NOT_A_DIRECTORY,
        posix::EISDIR => STATUS_FILE_IS_A_DIRECTORY,
        posix::ENOTEMPTY => STATUS_DIRECTORY_NOT_EMPTY,
        posix::ENOSPC => STATUS_DISK_FULL,
        posix::EDQUOT => STATUS_QUOTA_EXCEEDED,
        posix::EBADF => STATUS_INVALID_HANDLE,
        posix::EBUSY => STATUS_SHARING_VIOLATION,
        posix::ENOTSUP => STATUS_NOT_SUPPORTED,
        posix::EXDEV => STATUS_NOT_SAME_DEVICE,
        // `.versions` with the server out of reach.
        posix::ENETUNREACH => STATUS_NETWORK_UNREACHABLE,
        _ => STATUS_UNEXPECTED_IO_ERROR,
    };
    nt(status)
}

fn filetime(t: SystemTime) -> u64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => FILETIME_UNIX_EPOCH + (d.as_nanos() / 100) as u64,
        Err(e) => FILETIME_UNIX_EPOCH.saturating_sub((e.duration().as_nanos() / 100) as u64),
    }
}

fn system_time(ft: u64) -> SystemTime {
    if ft >= FILETIME_UNIX_EPOCH {
        UNIX_EPOCH + Duration::from_nanos((ft - FILETIME_UNIX_EPOCH).saturating_mul(100))
    } else {
        UNIX_EPOCH - Duration::from_nanos((FILETIME_UNIX_EPOCH - ft).saturating_mul(100))
    }
}

fn fill(info: &mut FileInfo, attr: &Attr, hidden: bool) {
    let mut attributes = match attr.kind {
        FileKind::Dir => FILE_ATTRIBUTE_DIRECTORY,
        _ => FILE_ATTRIBUTE_ARCHIVE,
    };
    if attr.kind != FileKind::Dir && attr.perm & 0o222 == 0 {
        attributes |= FILE_ATTRIBUTE_READONLY;
    }
    if hidden {
        attributes |= FILE_ATTRIBUTE_HIDDEN;
    }
    info.file_attributes = attributes;
    info.reparse_tag = 0;
    info.file_size = attr.size;
    info.allocation_size = attr.size.div_ceil(ALLOCATION_UNIT) * ALLOCATION_UNIT;
    info.creation_time = filetime(attr.ctime.min(attr.mtime));
    info.last_access_time = filetime(attr.atime);
    info.last_write_time = filetime(attr.mtime);
    info.change_time = filetime(attr.mtime);
    info.index_number = attr.ino;
    info.hard_links = 0;
    info.ea_size = 0;
}

/// The components of a WinFsp path (`\a\b`), as the program spelled them.
fn components(path: &U16CStr) -> Vec<OsString> {
    path.as_slice()
        .split(|&c| c == u16::from(b'\\'))
        .filter(|c| !c.is_empty())
        .map(OsString::from_wide)
        .collect()
}

/// The NTSTATUS for a path the core could not resolve.
fn path_status(e: PathError) -> FspError {
    match e {
        PathError::BadName(_) => nt(STATUS_OBJECT_NAME_INVALID),
        PathError::NoFolder => nt(STATUS_OBJECT_PATH_NOT_FOUND),
        PathError::Drive(e) => status_of(e),
    }
}

/// `\A\b.txt` from the names as stored (`\` for the root).
fn wide_path(stored: &[OsString]) -> Vec<u16> {
    let mut wide = Vec::new();
    for name in stored {
        wide.push(u16::from(b'\\'));
        wide.extend(name.encode_wide());
    }
    if wide.is_empty() {
        wide.push(u16::from(b'\\'));
    }
    wide
}

/// One open handle (WinFsp's per-open "file descriptor" context).
pub struct Handle {
    ino: Ino,
    /// The core's handle; `None` for folders.
    fh: Option<Fh>,
    writable: bool,
    hidden: bool,
    dir: DirBuffer,
}

/// The drive as a WinFsp file system.
pub struct WinFspDrive {
    drive: Arc<Drive>,
    security: Vec<u8>,
}

impl WinFspDrive {
    pub fn new(drive: Arc<Drive>) -> std::io::Result<Self> {
        Ok(Self {
            drive,
            security: security_descriptor(SDDL)?,
        })
    }

    /// Resolves a path to an existing entry (the core's walker: Windows' name rules,
    /// case-insensitive matching).
    fn walk(&self, path: &U16CStr) -> winfsp::Result<Walk<'_>> {
        self.drive.walk(&components(path)).map_err(path_status)
    }

    /// Resolves the folder of a path's last name, and that name as it will be stored.
    fn walk_parent(&self, path: &U16CStr) -> winfsp::Result<Walk<'_>> {
        self.drive
            .walk_parent(&components(path))
            .map_err(path_status)
    }

    fn attr(&self, h: &Handle) -> winfsp::Result<Attr> {
        Ok(self.drive.getattr(h.ino, h.fh).map_err(status_of)?.attr)
    }

    fn fill_from(&self, h: &Handle, info: &mut FileInfo) -> winfsp::Result<()> {
        let attr = self.attr(h)?;
        fill(info, &attr, h.hidden);
        Ok(())
    }

    fn copy_security(&self, buffer: Option<&mut [c_void]>) -> winfsp::Result<u64> {
        let len = self.security.len();
        if let Some(buf) = buffer {
            if buf.len() < len {
                return Err(nt(STATUS_BUFFER_OVERFLOW));
            }
            // SAFETY: `buf` holds at least `len` bytes (c_void is one byte wide) and
            // does not overlap our own copy.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.security.as_ptr(),
                    buf.as_mut_ptr().cast::<u8>(),
                    len,
                );
            }
        }
        Ok(len as u64)
    }

    /// A handle on a resolved entry: files are opened in the core, folders are listed
    /// when read.
    fn open_walked(
        &self,
        walk: Walk<'_>,
        granted_access: u32,
        info: &mut OpenFileInfo,
    ) -> winfsp::Result<Handle> {
        let Some(entry) = &walk.entry else {
            return Err(nt(STATUS_OBJECT_NAME_NOT_FOUND));
        };
        let attr = entry.attr;
        let hidden = windows_names::is_hidden(walk.parent, &walk.name);
        info.set_normalized_name(&wide_path(&walk.stored), None);
        fill(info.as_mut(), &attr, hidden);
        let writes = FILE_WRITE_DATA | FILE_APPEND_DATA | GENERIC_WRITE | GENERIC_ALL;
        let (fh, writable) = if attr.kind == FileKind::Dir {
            (None, false)
        } else {
            let (opened, writable) = self
                .drive
                .open_for(attr.ino, granted_access & writes != 0, None)
                .map_err(status_of)?;
            (Some(opened.fh), writable)
        };
        let ino = walk.keep().unwrap_or(attr.ino);
        Ok(Handle {
            ino,
            fh,
            writable,
            hidden,
            dir: DirBuffer::new(),
        })
    }

    /// Removes a name whose last handle closed with the delete disposition set.
    fn delete(&self, h: &Handle, path: &U16CStr) {
        let result = self.walk_parent(path).and_then(|walk| {
            let removed = if h.fh.is_none() {
                self.drive.rmdir(walk.parent, &walk.name)
            } else {
                self.drive.unlink(walk.parent, &walk.name)
            };
            removed.map_err(status_of)
        });
        if let Err(e) = result {
            tracing::warn!(error = ?e, path = %path.display(), "could not delete on close");
        }
    }
}

impl FileSystemContext for WinFspDrive {
    type FileContext = Handle;

    fn get_security_by_name(
        &self,
        file_name: &U16CStr,
        security_descriptor: Option<&mut [c_void]>,
        _reparse_point_resolver: impl FnOnce(&U16CStr) -> Option<FileSecurity>,
    ) -> winfsp::Result<FileSecurity> {
        let walk = self.walk(file_name)?;
        let Some(entry) = &walk.entry else {
            return Err(nt(STATUS_OBJECT_NAME_NOT_FOUND));
        };
        let mut info = FileInfo::default();
        let hidden = windows_names::is_hidden(walk.parent, &walk.name);
        fill(&mut info, &entry.attr, hidden);
        let len = self.copy_security(security_descriptor)?;
        Ok(FileSecurity {
            reparse: false,
            sz_security_descriptor: len,
            attributes: info.file_attributes,
        })
    }

    fn open(
        &self,
        file_name: &U16CStr,
        _create_options: u32,
        granted_access: u32,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Handle> {
        let walk = self.walk(file_name)?;
        self.open_walked(walk, granted_access, file_info)
    }

    fn close(&self, context: Handle) {
        if let Some(fh) = context.fh
            && let Err(e) = self.drive.release(fh)
        {
            tracing::warn!(error = %e, "releasing a handle");
        }
        if context.ino != ROOT {
            self.drive.forget(context.ino, 1);
        }
    }

    fn create(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        _granted_access: u32,
        file_attributes: u32,
        _security_descriptor: Option<&[c_void]>,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        _extra_buffer_is_reparse_point: bool,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Handle> {
        let walk = self.walk_parent(file_name)?;
        let (dir, name) = (walk.parent, &walk.name);
        let hidden = windows_names::is_hidden(dir, name);
        let (entry, fh) = if create_options & FILE_DIRECTORY_FILE != 0 {
            (self.drive.mkdir(dir, name, 0o755).map_err(status_of)?, None)
        } else {
            let mode = if file_attributes & FILE_ATTRIBUTE_READONLY != 0 {
                0o444
            } else {
                0o644
            };
            // WinFsp asks to create only names that do not exist: O_EXCL says so.
            let (entry, opened) = self
                .drive
                .create(dir, name, mode, posix::O_RDWR | posix::O_EXCL, None)
                .map_err(status_of)?;
            (entry, Some(opened.fh))
        };
        file_info.set_normalized_name(&wide_path(&walk.stored), None);
        fill(file_info.as_mut(), &entry.attr, hidden);
        // The create counted one lookup: the handle holds it until `close`.
        Ok(Handle {
            ino: entry.attr.ino,
            fh,
            // The creator may write its new file whatever attributes it asked for.
            writable: fh.is_some(),
            hidden,
            dir: DirBuffer::new(),
        })
    }

    fn cleanup(&self, context: &Handle, file_name: Option<&U16CStr>, flags: u32) {
        if FspCleanupFlags::FspCleanupDelete.is_flagged(flags)
            && let Some(path) = file_name
        {
            self.delete(context, path);
        }
        if let Some(fh) = context.fh
            && context.writable
            && let Err(e) = self.drive.flush(fh, None)
        {
            tracing::warn!(error = %e, "closing a handle");
        }
    }

    fn flush(&self, context: Option<&Handle>, file_info: &mut FileInfo) -> winfsp::Result<()> {
        let Some(h) = context else {
            return Ok(());
        };
        // Windows flushes only through handles that may write.
        if let Some(fh) = h.fh
            && h.writable
        {
            self.drive.fsync(fh, false).map_err(status_of)?;
        }
        self.fill_from(h, file_info)
    }

    fn get_file_info(&self, context: &Handle, file_info: &mut FileInfo) -> winfsp::Result<()> {
        self.fill_from(context, file_info)
    }

    fn get_security(
        &self,
        _context: &Handle,
        security_descriptor: Option<&mut [c_void]>,
    ) -> winfsp::Result<u64> {
        self.copy_security(security_descriptor)
    }

    fn set_security(
        &self,
        _context: &Handle,
        _security_information: u32,
        _modification_descriptor: ModificationDescriptor,
    ) -> winfsp::Result<()> {
        // Accepted and not kept (see the module documentation).
        Ok(())
    }

    fn overwrite(
        &self,
        context: &Handle,
        _file_attributes: u32,
        _replace_file_attributes: bool,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let set = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        self.drive
            .setattr(context.ino, context.fh, set)
            .map_err(status_of)?;
        self.fill_from(context, file_info)
    }

    fn read_directory(
        &self,
        context: &Handle,
        _pattern: Option<&U16CStr>,
        marker: DirMarker,
        buffer: &mut [u8],
    ) -> winfsp::Result<u32> {
        if marker.is_none()
            && let Ok(lock) = context.dir.acquire(true, None)
        {
            // One listing with attributes: no lookup per entry.
            for (e, attr) in self.drive.list_dir(context.ino).map_err(status_of)? {
                let dots = e.name == "." || e.name == "..";
                // WinFsp's convention: the root lists no `.` and `..`.
                if dots && context.ino == ROOT {
                    continue;
                }
                let mut info: DirInfo<255> = DirInfo::new();
                if info.set_name(&e.name).is_err() {
                    tracing::info!(name = ?e.name, "a name too long for Windows is not listed");
                    continue;
                }
                fill(
                    info.file_info_mut(),
                    &attr,
                    !dots && windows_names::is_hidden(context.ino, &e.name),
                );
                lock.write(&mut info)?;
            }
        }
        Ok(context.dir.read(marker, buffer))
    }

    fn rename(
        &self,
        _context: &Handle,
        file_name: &U16CStr,
        new_file_name: &U16CStr,
        replace_if_exists: bool,
    ) -> winfsp::Result<()> {
        let from = self.walk_parent(file_name)?;
        let to = self.walk_parent(new_file_name)?;
        let (from_dir, from_name) = (from.parent, &from.name);
        let (to_dir, mut to_name) = (to.parent, to.name.clone());
        let case_only = from_dir == to_dir && windows_names::same_name(from_name, &to_name);
        if case_only {
            // `essay.docx` → `Essay.docx`: the same file, a new spelling.
            to_name = components(new_file_name).pop().unwrap_or(to_name);
        }
        let flags = if replace_if_exists || case_only {
            0
        } else {
            posix::RENAME_NOREPLACE
        };
        self.drive
            .rename(from_dir, from_name, to_dir, &to_name, flags)
            .map_err(status_of)
    }

    fn set_basic_info(
        &self,
        context: &Handle,
        file_attributes: u32,
        _creation_time: u64,
        last_access_time: u64,
        last_write_time: u64,
        _last_change_time: u64,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let mut set = SetAttr::default();
        if file_attributes != INVALID_FILE_ATTRIBUTES && context.fh.is_some() {
            let attr = self.attr(context)?;
            let readonly = file_attributes & FILE_ATTRIBUTE_READONLY != 0;
            set.mode = attr::readonly_mode(attr.perm, readonly);
        }
        // 0 means "leave it" in FILE_BASIC_INFORMATION.
        if last_access_time != 0 {
            set.atime = Some(SetTime::At(system_time(last_access_time)));
        }
        if last_write_time != 0 {
            set.mtime = Some(SetTime::At(system_time(last_write_time)));
        }
        if set.mode.is_some() || set.atime.is_some() || set.mtime.is_some() {
            self.drive
                .setattr(context.ino, context.fh, set)
                .map_err(status_of)?;
        }
        self.fill_from(context, file_info)
    }

    fn set_delete(
        &self,
        context: &Handle,
        _file_name: &U16CStr,
        delete_file: bool,
    ) -> winfsp::Result<()> {
        if !delete_file {
            return Ok(());
        }
        // The root, `.versions` and all in it, `.ects-status.txt`, a folder that is not
        // empty: the core says which may go.
        self.drive.may_delete(context.ino).map_err(status_of)
    }

    fn set_file_size(
        &self,
        context: &Handle,
        new_size: u64,
        set_allocation_size: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let fh = context.fh.ok_or(nt(STATUS_FILE_IS_A_DIRECTORY))?;
        if set_allocation_size {
            self.drive.set_allocation(fh, new_size).map_err(status_of)?;
        } else {
            let set = SetAttr {
                size: Some(new_size),
                ..SetAttr::default()
            };
            self.drive
                .setattr(context.ino, Some(fh), set)
                .map_err(status_of)?;
        }
        self.fill_from(context, file_info)
    }

    fn read(&self, context: &Handle, buffer: &mut [u8], offset: u64) -> winfsp::Result<u32> {
        let fh = context.fh.ok_or(nt(STATUS_FILE_IS_A_DIRECTORY))?;
        let want = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
        let data = self.drive.read(fh, offset, want).map_err(status_of)?;
        if data.is_empty() && !buffer.is_empty() {
            return Err(nt(STATUS_END_OF_FILE));
        }
        buffer[..data.len()].copy_from_slice(&data);
        Ok(data.len() as u32)
    }

    fn write(
        &self,
        context: &Handle,
        buffer: &[u8],
        offset: u64,
        write_to_eof: bool,
        constrained_io: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<u32> {
        let fh = context.fh.ok_or(nt(STATUS_FILE_IS_A_DIRECTORY))?;
        let at = if constrained_io {
            // Paging I/O never extends the file.
            WriteAt::WithinSize(offset)
        } else if write_to_eof {
            WriteAt::EndOfFile
        } else {
            WriteAt::Offset(offset)
        };
        let written = self.drive.write_at(fh, at, buffer).map_err(status_of)?;
        self.fill_from(context, file_info)?;
        Ok(written)
    }

    fn get_volume_info(&self, out_volume_info: &mut VolumeInfo) -> winfsp::Result<()> {
        let stats = self.drive.statfs().map_err(status_of)?;
        out_volume_info.total_size = stats.blocks * u64::from(stats.frsize);
        out_volume_info.free_size = stats.bavail * u64::from(stats.frsize);
        out_volume_info.set_volume_label(FILESYSTEM_NAME);
        Ok(())
    }
}

/// A self-relative security descriptor from its SDDL text.
fn security_descriptor(sddl: &str) -> std::io::Result<Vec<u8>> {
    use windows_sys::Win32::Foundation::LocalFree;
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
    };
    let wide: Vec<u16> = OsStr::new(sddl).encode_wide().chain(Some(0)).collect();
    let mut sd: *mut c_void = std::ptr::null_mut();
    let mut len: u32 = 0;
    // SAFETY: a NUL-terminated string and two out-parameters we own; on success the
    // descriptor is a LocalAlloc'ed block of `len` bytes that we copy and free.
    unsafe {
        if ConvertStringSecurityDescriptorToSecurityDescriptorW(
            wide.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            &mut len,
        ) == 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let bytes = std::slice::from_raw_parts(sd.cast::<u8>(), len as usize).to_vec();
        LocalFree(sd);
        Ok(bytes)
    }
}

/// Why WinFsp could not be used, for a person.
#[derive(Debug, thiserror::Error)]
pub enum WinFspError {
    #[error(
        "the ects drive needs WinFsp, which is not installed on this computer (or its DLL \
         could not be loaded). Install it from https://winfsp.dev (or `choco install winfsp`, \
         `winget install WinFsp.WinFsp`), then mount again. Other ects commands work without it."
    )]
    NotInstalled,
    #[error("{what}: {detail}")]
    Host { what: &'static str, detail: String },
    #[error("preparing the drive's security descriptor: {0}")]
    Security(std::io::Error),
}

/// Loads WinFsp's DLL (delay-loaded: `ects.exe` starts without it). Looks in
/// WinFsp's install folder (from the registry) first, then the usual DLL search path.
pub fn init() -> Result<(), WinFspError> {
    load_installed_dll();
    winfsp::winfsp_init()
        .map(|_| ())
        .map_err(|_| WinFspError::NotInstalled)
}

/// `LoadLibraryW("<InstallDir>\bin\winfsp-<arch>.dll")`; afterwards the delay-load
/// helper finds the module already loaded under its plain name.
fn load_installed_dll() {
    use windows_sys::Win32::System::LibraryLoader::LoadLibraryW;
    use windows_sys::Win32::System::Registry::{HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ, RegGetValueW};
    let dll = if cfg!(target_arch = "x86_64") {
        "winfsp-x64.dll"
    } else if cfg!(target_arch = "aarch64") {
        "winfsp-a64.dll"
    } else {
        "winfsp-x86.dll"
    };
    let wide = |s: &str| -> Vec<u16> { OsStr::new(s).encode_wide().chain(Some(0)).collect() };
    let value = wide("InstallDir");
    for key in ["SOFTWARE\\WOW6432Node\\WinFsp", "SOFTWARE\\WinFsp"] {
        let key = wide(key);
        let mut buf = [0u16; 520];
        let mut size = std::mem::size_of_val(&buf) as u32;
        // SAFETY: NUL-terminated key and value names; `buf` holds `size` bytes.
        let rc = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                value.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut size,
            )
        };
        if rc != 0 {
            continue;
        }
        let chars = (size as usize / 2).min(buf.len());
        let dir = OsString::from_wide(&buf[..chars]);
        let dir = dir.to_string_lossy();
        let dir = dir.trim_end_matches('\0').trim_end_matches('\\');
        let path = wide(&format!("{dir}\\bin\\{dll}"));
        // SAFETY: a NUL-terminated path; a failed load returns null and is harmless.
        let module = unsafe { LoadLibraryW(path.as_ptr()) };
        if !module.is_null() {
            return;
        }
    }
}

/// A mounted drive; `FileSystemHost`'s own drop unmounts it and stops the dispatcher.
pub struct Mounted {
    _host: FileSystemHost<WinFspDrive>,
}

/// Mounts the drive on a drive letter (`B:`) or a folder that does not exist yet;
/// with `prefix` (`\ects\alice`) as a network drive.
pub fn mount(
    drive: Arc<Drive>,
    mountpoint: &OsStr,
    prefix: Option<&str>,
) -> Result<Mounted, WinFspError> {
    let mut params = VolumeParams::new();
    params
        .sector_size(4096)
        .sectors_per_allocation_unit(1)
        .max_component_length(255)
        .volume_creation_time(filetime(SystemTime::now()))
        .volume_serial_number(
            (SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                & 0xFFFF_FFFF) as u32,
        )
        .file_info_timeout(1000)
        .case_sensitive_search(false)
        .case_preserved_names(true)
        .unicode_on_disk(true)
        .persistent_acls(true)
        .post_cleanup_when_modified_only(false)
        .flush_and_purge_on_cleanup(true)
        .filesystem_name(FILESYSTEM_NAME);
    if let Some(prefix) = prefix {
        params.prefix(prefix);
    }
    let context = WinFspDrive::new(drive).map_err(WinFspError::Security)?;
    // Name the guard strategy: `new` is generic over it, and with it left open both
    // guards' `start` apply (E0034). FineGuard is what `Mounted` holds.
    let mut host: FileSystemHost<WinFspDrive> =
        FileSystemHost::new(params, context).map_err(|e| WinFspError::Host {
            what: "creating the WinFsp file system",
            detail: e.to_string(),
        })?;
    host.mount(mountpoint).map_err(|e| WinFspError::Host {
        what: "mounting the drive (is the drive letter or folder free?)",
        detail: e.to_string(),
    })?;
    host.start().map_err(|e| WinFspError::Host {
        what: "starting the WinFsp dispatcher",
        detail: e.to_string(),
    })?;
    Ok(Mounted { _host: host })
}
