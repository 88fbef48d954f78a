//! The `replenish` command line: argument parsing and exit codes only. Exit codes:
//! 0 success, 2 bad usage or bad input (the message names the line and field at
//! fault), 1 anything else.
#![forbid(unsafe_code)]

use std::io::{self, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use replenish::inspect::{self, Listing};
use replenish::iso8583::Spec;

#[derive(Parser)]
#[command(
    name = "replenish",
    version,
    about = "An ISO 8583 switch for prepaid-account replenishment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode hex messages (the argument, or one per line on stdin) to JSON.
    Decode {
        /// Spec name (iso87ascii, iso87binary, iso87bcd, iso87ebcdic) or a spec .toml file.
        #[arg(long, default_value = "iso87ascii")]
        spec: String,
        /// One line per field with its name, account numbers masked.
        #[arg(long)]
        pretty: bool,
        /// The message in hex; without it, messages are read from stdin, one per line.
        hex: Option<String>,
    },
    /// Encode JSON messages from stdin ({"mti":"0200","fields":{"2":"..."}}) to hex.
    Encode {
        /// Spec name or a spec .toml file.
        #[arg(long, default_value = "iso87ascii")]
        spec: String,
    },
}

/// A failure and the exit code it maps to.
enum Failure {
    /// Bad usage or bad input: exit 2.
    Input(String),
    /// Anything else: exit 1.
    Other(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Other(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            eprintln!("replenish: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("replenish: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Decode { spec, pretty, hex } => {
            let spec = load_spec(&spec)?;
            let listing = if pretty {
                Listing::Pretty
            } else {
                Listing::Json
            };
            match hex {
                Some(text) => {
                    let shown =
                        inspect::decode_hex(&spec, &text, listing).map_err(Failure::Input)?;
                    println!("{shown}");
                    Ok(())
                }
                None => {
                    let (stdin, mut stdout) = (io::stdin().lock(), io::stdout().lock());
                    let failures = inspect::decode_lines(
                        &spec,
                        stdin,
                        listing,
                        &mut stdout,
                        &mut io::stderr(),
                    )?;
                    failed_messages(failures)
                }
            }
        }
        Command::Encode { spec } => {
            let spec = load_spec(&spec)?;
            let mut input = String::new();
            io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| Failure::Input(format!("stdin: {e}")))?;
            let failures = inspect::encode_json_stream(
                &spec,
                &input,
                &mut io::stdout().lock(),
                &mut io::stderr(),
            )?;
            failed_messages(failures)
        }
    }
}

fn load_spec(name: &str) -> Result<Spec, Failure> {
    Spec::resolve(name).map_err(|e| Failure::Input(e.to_string()))
}

fn failed_messages(count: usize) -> Result<(), Failure> {
    match count {
        0 => Ok(()),
        n => Err(Failure::Input(format!(
            "{n} message(s) could not be converted"
        ))),
    }
}
