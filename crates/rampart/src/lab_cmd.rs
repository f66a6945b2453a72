//! `rampart lab`: runs scenarios in the deterministic simulator (no root, no sockets).
//!
//! Exit codes: 0 every assertion held, 1 an assertion failed, 2 the scenario is invalid or
//! unknown.

use std::process::ExitCode;

use crate::cli::{LabArgs, LabCommand};
use crate::{EXIT_CONFIG, EXIT_FAILURE};

pub fn run(args: &LabArgs) -> ExitCode {
    match &args.command {
        None => run_one(rampart_sim::SHOWCASE, None, true),
        Some(LabCommand::List) => {
            list();
            ExitCode::SUCCESS
        }
        Some(LabCommand::Run { scenario, seed }) => run_one(scenario, *seed, false),
    }
}

fn list() {
    println!(
        "built-in scenarios (rampart lab run NAME [--seed N]; a scenario file path works too):\n"
    );
    let mut all = vec![rampart_sim::showcase()];
    all.extend(rampart_sim::catalogue());
    let width = all.iter().map(|b| b.name.len()).max().unwrap_or(0);
    for b in all {
        let summary = rampart_sim::scenario::parse(b.text, b.name)
            .map(|s| s.summary)
            .unwrap_or_else(|e| format!("(invalid: {e})"));
        println!("  {:<width$}  {summary}", b.name);
    }
}

fn run_one(name: &str, seed: Option<u64>, showcase: bool) -> ExitCode {
    let (scenario, dir) = match rampart_sim::load(name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}; `rampart lab list` shows the built-in scenarios");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut report = match rampart_sim::run(&scenario, dir.as_deref(), seed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The reproduction hint names the scenario the way it was given (name or file).
    report.scenario = name.to_string();
    print!("{}", report.render());
    if showcase {
        println!(
            "\nThis ran the real gateway engines in simulated time. More: `rampart lab list`,\n\
             `rampart lab run NAME --seed N`; scenarios are TOML files (docs/lab.md)."
        );
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
