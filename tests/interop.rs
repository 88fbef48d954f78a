//! Interoperability with pyiso8583 4.x, the reference for `iso87ascii` and
//! `iso87binary`: `tests/interop/pyiso8583_interop.py` generates random messages,
//! encodes them with pyiso8583 and with `replenish encode`, decodes them with both, and
//! feeds mutated messages to `replenish decode`. This test finds a Python with
//! pyiso8583 4.x (the system `python3`, or a venv it makes under the target directory)
//! and runs the script against the binary Cargo just built.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// Messages generated per spec.
const MESSAGES: &str = "2000";
/// The pyiso8583 release whose specs ours must equal byte for byte.
const PYISO8583: &str = "pyiso8583==4.0.1";
/// What the script needs: pyiso8583 4.x and a TOML reader.
const PROBE: &str = "import sys, iso8583\n\
    assert iso8583.__version__.startswith('4.'), iso8583.__version__\n\
    if sys.version_info >= (3, 11):\n    import tomllib\nelse:\n    import tomli\n";

fn run(command: &mut Command, what: &str) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({command:?}): {e}"))
}

fn shown(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `python3` if it has pyiso8583 4.x, else the python of a venv under the target
/// directory with pyiso8583 installed (made on first use).
fn python_with_pyiso8583() -> PathBuf {
    support::python::python_with(
        "pyiso8583",
        PROBE,
        &[PYISO8583, "tomli; python_version < '3.11'"],
    )
}

#[test]
fn pyiso8583_and_replenish_agree_both_ways() {
    let python = python_with_pyiso8583();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyiso8583_interop.py");
    let started = Instant::now();
    let output = run(
        Command::new(&python)
            .arg(&script)
            .arg(env!("CARGO_BIN_EXE_replenish"))
            .arg(MESSAGES),
        "the pyiso8583 interop script",
    );
    let report = shown(&output);
    assert!(
        output.status.success(),
        "pyiso8583 interop failed ({} with {}):\n{report}",
        script.display(),
        python.display()
    );
    println!(
        "{report}\n(interop script took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}
