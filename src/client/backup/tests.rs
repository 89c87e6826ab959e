use super::*;

// Unix only: a backslash in a name and unprivileged symlinks do not exist on Windows.
#[cfg(unix)]
#[test]
fn walk_names_symlinks_and_ignored_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("Documents");
    fs::create_dir_all(root.join("New folder/Übung 1")).unwrap();
    fs::write(root.join("New folder/Übung 1/a b.txt"), b"x").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("~$lock.docx"), b"lock").unwrap();
    fs::write(root.join("Thumbs.db"), b"t").unwrap();
    fs::write(root.join("bad\\name"), b"b").unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("filelink")).unwrap();

    let w = walk(std::slice::from_ref(&root)).unwrap();
    let paths: Vec<&str> = w.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["Documents/New folder/Übung 1/a b.txt", "Documents/empty"]
    );
    assert_eq!(w.bytes, 1);
    assert_eq!(w.skipped, 4, "two ignored names, two symlinks");
    assert_eq!(w.problems.len(), 1);
    assert!(
        w.problems[0].1.contains("cannot be stored"),
        "{:?}",
        w.problems
    );

    // `.` is stored under the folder's real name.
    let dot = walk(&[root.join(".")]).unwrap();
    assert_eq!(
        dot.files[0].path.as_str(),
        "Documents/New folder/Übung 1/a b.txt"
    );
    assert!(
        walk(&[root.join("empty")]).is_err(),
        "a file is not a folder"
    );
    assert!(walk(&[tmp.path().join("missing")]).is_err());
}

#[test]
fn hash_cache_needs_the_exact_same_stat() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("d");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("f"), b"one").unwrap();
    let w = walk(std::slice::from_ref(&root)).unwrap();
    let file = tmp.path().join("hashes");
    let fake = Digest::of(b"pretend");
    HashCache::save(&file, &[(w.files[0].clone(), fake)]).unwrap();
    let cache = HashCache::load(&file);
    assert_eq!(cache.get(&w.files[0]), Some(fake));
    // Rewriting the file changes its ctime (and here its size): no hit.
    fs::write(root.join("f"), b"two!").unwrap();
    let w2 = walk(std::slice::from_ref(&root)).unwrap();
    assert_eq!(cache.get(&w2.files[0]), None);
    // A damaged cache is just empty.
    fs::write(&file, b"garbage\n{").unwrap();
    assert_eq!(HashCache::load(&file).get(&w.files[0]), None);
}
