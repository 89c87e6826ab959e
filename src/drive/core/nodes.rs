//! The inode table: the kernel's node ids mapped to names in the backing folder and to
//! the virtual `.versions` and status entries.
//!
//! Each (parent, name) gets its own id, allocated from a counter and never reused while
//! mounted, so no generation numbers are needed. A node removed from its folder (unlink,
//! rename over it) becomes an orphan: it keeps working for the handles still open on it
//! and disappears when the kernel forgets it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::names::RelPath;
use crate::store::VersionInfo;

pub type Ino = u64;
pub const ROOT: Ino = 1;

/// What a node stands for.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A file, folder, link … in the backing folder.
    Backing,
    /// `.versions` (None) or a folder of the user's namespace inside it.
    VersionsDir(Option<RelPath>),
    /// The folder holding the versions of one file.
    VersionsFile(RelPath),
    /// One stored version.
    Version(RelPath, VersionInfo),
    /// `.ects-status.txt`.
    Status,
}

#[derive(Debug)]
pub struct Node {
    pub parent: Ino,
    pub name: OsString,
    pub kind: NodeKind,
    /// Lookups the kernel holds on this node (dropped by `forget`).
    pub lookups: u64,
    /// Open handles that may write and have not been closed yet.
    pub writers: u32,
    /// Open handles of any kind.
    pub open: u32,
    /// Removed from its folder; only open handles and kernel references keep it.
    pub orphan: bool,
    /// A version of it is being captured; opens for writing wait for it.
    pub capturing: bool,
    /// Asked to take a version while a capture of this node was running (e.g. a rename
    /// onto a versioned name racing the release of the last handle): the capturing
    /// thread looks again when it is done, so that request is never dropped.
    pub recheck: bool,
    /// Names in the table whose parent is this node.
    kids: u32,
}

impl Node {
    /// A node the kernel has just learned about (one lookup), closed and idle.
    fn new(parent: Ino, name: OsString, kind: NodeKind) -> Self {
        Self {
            parent,
            name,
            kind,
            lookups: 1,
            writers: 0,
            open: 0,
            orphan: false,
            capturing: false,
            recheck: false,
            kids: 0,
        }
    }
}

#[derive(Debug)]
pub struct NodeTable {
    nodes: HashMap<Ino, Node>,
    children: HashMap<(Ino, OsString), Ino>,
    next: Ino,
}

impl Default for NodeTable {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(ROOT, OsString::new(), NodeKind::Backing));
        Self {
            nodes,
            children: HashMap::new(),
            next: ROOT + 1,
        }
    }
}

impl NodeTable {
    fn link(&mut self, key: (Ino, OsString), ino: Ino) {
        if let Some(parent) = self.nodes.get_mut(&key.0) {
            parent.kids += 1;
        }
        self.children.insert(key, ino);
    }

    fn unlink(&mut self, key: &(Ino, OsString)) -> Option<Ino> {
        let ino = self.children.remove(key)?;
        if let Some(parent) = self.nodes.get_mut(&key.0) {
            parent.kids = parent.kids.saturating_sub(1);
        }
        Some(ino)
    }

    pub fn get(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    pub fn child(&self, parent: Ino, name: &OsStr) -> Option<Ino> {
        self.children.get(&(parent, name.to_owned())).copied()
    }

    /// The node for `name` in `parent`, created with `kind` if new; counts one lookup.
    pub fn lookup(&mut self, parent: Ino, name: &OsStr, kind: NodeKind) -> Ino {
        let key = (parent, name.to_owned());
        if let Some(&ino) = self.children.get(&key)
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            node.lookups += 1;
            node.kind = kind;
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.nodes
            .insert(ino, Node::new(parent, name.to_owned(), kind));
        self.link(key, ino);
        ino
    }

    /// The path of a node relative to the backing folder (empty for the root); `None` for
    /// an orphan or a node the kernel no longer holds.
    pub fn rel_path(&self, ino: Ino) -> Option<PathBuf> {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = self.nodes.get(&cur)?;
            if node.orphan {
                return None;
            }
            parts.push(&node.name);
            cur = node.parent;
        }
        Some(parts.iter().rev().collect())
    }

    /// Detaches `name` from `parent` (unlink, rmdir, or replaced by a rename).
    pub fn detach(&mut self, parent: Ino, name: &OsStr) {
        if let Some(ino) = self.unlink(&(parent, name.to_owned())) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.orphan = true;
            }
            self.maybe_drop(ino);
        }
    }

    /// Moves the node at (parent, name) to (new_parent, new_name), detaching whatever
    /// was there.
    pub fn rename(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        self.detach(new_parent, new_name);
        if let Some(ino) = self.unlink(&(parent, name.to_owned())) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.parent = new_parent;
                node.name = new_name.to_owned();
            }
            self.link((new_parent, new_name.to_owned()), ino);
        }
    }

    /// Swaps two names (RENAME_EXCHANGE).
    pub fn exchange(&mut self, a_parent: Ino, a: &OsStr, b_parent: Ino, b: &OsStr) {
        let ka = (a_parent, a.to_owned());
        let kb = (b_parent, b.to_owned());
        let ia = self.unlink(&ka);
        let ib = self.unlink(&kb);
        if let Some(ia) = ia {
            if let Some(n) = self.nodes.get_mut(&ia) {
                n.parent = b_parent;
                n.name = b.to_owned();
            }
            self.link(kb, ia);
        }
        if let Some(ib) = ib {
            if let Some(n) = self.nodes.get_mut(&ib) {
                n.parent = a_parent;
                n.name = a.to_owned();
            }
            self.link(ka, ib);
        }
    }

    /// The kernel dropped `n` references.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    /// Removes a node nobody refers to any more. A folder the kernel forgot while still
    /// in place is dropped too; a later lookup simply creates a fresh id.
    pub fn maybe_drop(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        // Keep children's parent links valid: only leaves are dropped.
        if ino == ROOT || node.lookups > 0 || node.open > 0 || node.kids > 0 {
            return;
        }
        let parent = node.parent;
        if !node.orphan {
            let key = (parent, node.name.clone());
            if self.children.get(&key) == Some(&ino) {
                self.unlink(&key);
            }
        }
        self.nodes.remove(&ino);
        self.maybe_drop(parent);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_renames_and_orphans() {
        let mut t = NodeTable::default();
        let d = t.lookup(ROOT, OsStr::new("d"), NodeKind::Backing);
        let f = t.lookup(d, OsStr::new("f"), NodeKind::Backing);
        assert_eq!(t.rel_path(f).unwrap(), PathBuf::from("d/f"));
        let e = t.lookup(ROOT, OsStr::new("e"), NodeKind::Backing);
        t.rename(d, OsStr::new("f"), e, OsStr::new("g"));
        assert_eq!(t.rel_path(f).unwrap(), PathBuf::from("e/g"));
        assert_eq!(t.child(e, OsStr::new("g")), Some(f));
        // A rename over an existing name orphans the old node.
        let h = t.lookup(ROOT, OsStr::new("h"), NodeKind::Backing);
        t.rename(e, OsStr::new("g"), ROOT, OsStr::new("h"));
        assert!(t.rel_path(h).is_none());
        assert_eq!(t.rel_path(f).unwrap(), PathBuf::from("h"));
        t.forget(h, 1);
        assert!(t.get(h).is_none());
    }

    #[test]
    fn exchange_swaps() {
        let mut t = NodeTable::default();
        let a = t.lookup(ROOT, OsStr::new("a"), NodeKind::Backing);
        let b = t.lookup(ROOT, OsStr::new("b"), NodeKind::Backing);
        t.exchange(ROOT, OsStr::new("a"), ROOT, OsStr::new("b"));
        assert_eq!(t.rel_path(a).unwrap(), PathBuf::from("b"));
        assert_eq!(t.rel_path(b).unwrap(), PathBuf::from("a"));
    }
}
