//! A Python with the packages a test needs: the system `python3` when it has them,
//! else a venv made under the target directory (once) with them installed from PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn can_run(python: &Path, probe: &str) -> bool {
    Command::new(python)
        .args(["-c", probe])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// A Python for which `probe` (Python code) succeeds, installing `packages` into a venv
/// named `name` under the target directory when the system's cannot run it.
pub fn python_with(name: &str, probe: &str, packages: &[&str]) -> PathBuf {
    let system = PathBuf::from("python3");
    if can_run(&system, probe) {
        return system;
    }
    let venv = target_dir().join(format!("{name}-venv"));
    let python = venv.join("bin").join("python");
    if can_run(&python, probe) {
        return python;
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .unwrap_or_else(|e| panic!("cannot remove the broken venv {}: {e}", venv.display()));
    }
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .output()
        .expect("python3 -m venv (is python3 with the venv module installed?)");
    assert!(
        made.status.success(),
        "creating {} failed: {made:?}",
        venv.display()
    );
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages)
        .output()
        .expect("pip install in the venv");
    assert!(
        installed.status.success(),
        "pip install {packages:?} into {} failed:\n{}",
        venv.display(),
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(
        can_run(&python, probe),
        "{} still fails {probe:?}",
        python.display()
    );
    python
}
