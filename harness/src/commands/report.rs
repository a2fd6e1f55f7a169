//! `fortress report <run-dir>`: the charts and `report.html` of a run, drawn again from its saved
//! data; `fortress compare <a> <b>`: two runs' key figures side by side.

use crate::cli::{CompareArgs, ReportArgs};
use crate::report::{self, Run, compare as comparison};

/// Exit code 0 when written, 3 when the folder is not a readable run.
pub fn report(args: &ReportArgs) -> u8 {
    match report::render(&args.run_dir) {
        Ok(rendered) => {
            println!("report: {}", rendered.html.display());
            for chart in std::iter::once(&rendered.headline).chain(&rendered.charts) {
                println!("chart:  {}", chart.display());
            }
            0
        }
        Err(error) => {
            eprintln!("fortress: {error}");
            3
        }
    }
}

/// Exit code 0 when compared, 3 when a folder is not a readable run.
pub fn compare(args: &CompareArgs) -> u8 {
    let runs = Run::load(&args.run_a).and_then(|a| Ok((a, Run::load(&args.run_b)?)));
    let (a, b) = match runs {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("fortress: {error}");
            return 3;
        }
    };
    let changes = comparison::changes(&a, &b);
    // A closed pipe (`| head`) ends the table early; it is not an error worth a panic.
    let _ = std::io::Write::write_all(
        &mut std::io::stdout(),
        comparison::text(&a, &b, &changes).as_bytes(),
    );
    let name = |run: &Run| {
        run.dir
            .file_name()
            .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned())
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let parent = args.run_b.parent().unwrap_or(std::path::Path::new("."));
        parent.join(format!("compare-{}-vs-{}.html", name(&a), name(&b)))
    });
    match comparison::write_page(&a, &b, &changes, &out) {
        Ok(()) => {
            println!("\ncomparison page: {}", out.display());
            0
        }
        Err(error) => {
            eprintln!("fortress: {error}");
            4
        }
    }
}
