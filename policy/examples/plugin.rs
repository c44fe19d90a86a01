//! A stand-in for the `dasher plugin …` CLI until the server binary wires it in; each
//! subcommand is one call into `dasher_policy::tools`.
//!
//! ```text
//! cargo run -p dasher-policy --example plugin -- build <crate dir> [-o FILE]
//! cargo run -p dasher-policy --example plugin -- inspect <file>
//! cargo run -p dasher-policy --example plugin -- test <file> <fixtures dir>
//! cargo run -p dasher-policy --example plugin -- install <file> <plugins dir>
//! ```

use dasher_policy::tools;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["build", dir, rest @ ..] => {
            let out = match rest {
                ["-o", file] => Some(PathBuf::from(file)),
                [] => None,
                _ => return usage(),
            };
            tools::build(dir.as_ref(), out.as_deref(), &tools::BuildOptions::default()).map(|r| {
                println!(
                    "{} ({} bytes, core module {} bytes)\nsha256 {}",
                    r.component.display(),
                    r.component_bytes,
                    r.core_bytes,
                    r.hash
                );
                true
            })
        }
        ["inspect", file] => tools::inspect(file.as_ref()).map(|i| {
            print!("{i}");
            i.compatible.is_ok()
        }),
        ["test", file, fixtures] => tools::test(file.as_ref(), fixtures.as_ref()).map(|r| {
            print!("{r}");
            r.passed()
        }),
        ["install", file, dir] => tools::install(file.as_ref(), dir.as_ref()).map(|p| {
            println!("installed {}", p.display());
            true
        }),
        _ => return usage(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: plugin build <crate dir> [-o FILE] | inspect <file> | test <file> <fixtures> | install <file> <dir>"
    );
    ExitCode::from(2)
}
