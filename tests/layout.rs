//! The rooms of `src/` import one way (README, "Where things are"): each folder (or
//! top-level file) may name only the rooms below it in [`LAYERS`], so a change that
//! would make an import circle between folders fails here, naming the file and line.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The rooms from the bottom up; a room may import the rooms before it.
const LAYERS: &[&str] = &[
    "wire",
    "logging",
    "vocab",
    "config",
    "durable",
    "engine",
    "pins",
    "switch",
    "acquirer",
    "operate",
    "notify",
    "backoffice",
    "console",
    "channels",
    "server",
    "tools",
];

fn rank(room: &str) -> Option<usize> {
    LAYERS.iter().position(|r| *r == room)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The room a file of `src/` belongs to: its folder, or its own name at the top.
fn room_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// Every `crate::ROOM` a file names outside comments, with its line number.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((number + 1, name));
            rest = after;
        }
    }
    found
}

#[test]
fn rooms_import_only_the_rooms_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let room = room_of(&src, file);
        if room == "lib" || room == "main" {
            continue;
        }
        let Some(own) = rank(&room) else {
            wrong.push(format!(
                "{}: room `{room}` is not in LAYERS",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("readable");
        for (line, target) in imports(&text) {
            *seen.entry(format!("{room} -> {target}")).or_default() += 1;
            if target == room {
                continue;
            }
            match rank(&target) {
                Some(other) if other < own => {}
                _ => wrong.push(format!(
                    "{}:{line}: `{room}` imports `crate::{target}`, which is not below it",
                    file.display()
                )),
            }
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    assert!(
        seen.contains_key("switch -> durable"),
        "no imports seen: {seen:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    let text = "use crate::server::run; // crate::tools in a comment\n/// crate::x\n";
    let found = imports(text);
    assert_eq!(found, vec![(1, "server".to_owned())]);
}
