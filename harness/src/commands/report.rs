//! `fortress report <run-dir>`: the charts and `report.html` of a run, drawn again from its saved
//! data; `fortress compare <a> <b>`: two runs' key figures side by side.

use super::print_error;
use crate::cli::{CompareArgs, ReportArgs};
use crate::report::{self, Run, compare as comparison};
use crate::vocabulary::ExitCode;

/// Written, or a usage error when the folder is not a readable run.
pub fn report(args: &ReportArgs) -> ExitCode {
    match report::render(&args.run_dir) {
        Ok(rendered) => {
            println!("report: {}", rendered.html.display());
            for chart in std::iter::once(&rendered.headline).chain(&rendered.charts) {
                println!("chart:  {}", chart.display());
            }
            ExitCode::Confirmed
        }
        Err(error) => {
            print_error(&error);
            ExitCode::Usage
        }
    }
}

/// Compared, or a usage error when a folder is not a readable run.
pub fn compare(args: &CompareArgs) -> ExitCode {
    let runs = Run::load(&args.run_a).and_then(|a| Ok((a, Run::load(&args.run_b)?)));
    let (a, b) = match runs {
        Ok(runs) => runs,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    let changes = comparison::changes(&a, &b);
    // A closed pipe (`| head`) ends the table early; it is not an error worth a panic.
    let _ = std::io::Write::write_all(
        &mut std::io::stdout(),
        comparison::text(&a, &b, &changes).as_bytes(),
    );
    let out = args.out.clone().unwrap_or_else(|| {
        let parent = args.run_b.parent().unwrap_or(std::path::Path::new("."));
        parent.join(format!("compare-{}-vs-{}.html", a.folder.name(), b.folder.name()))
    });
    match comparison::write_page(&a, &b, &changes, &out) {
        Ok(()) => {
            println!("\ncomparison page: {}", out.display());
            ExitCode::Confirmed
        }
        Err(error) => {
            print_error(&error);
            ExitCode::Environment
        }
    }
}
