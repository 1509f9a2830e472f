//! The run's chart (`--plot FILE.svg`): each figure as ratios on one log axis, drawn from
//! the JSON line: beside its floor, beside Python's module, beside the Rust peers.
//!
//! Every ratio is turned so that right of 1× is better for mproc: a time's floor ratio is
//! floor / ours and a rate's ours / floor (1 = at the floor, it cannot do better); beside
//! Python or a peer, how many times faster mproc is. Bars start at 1×.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// What a figure is compared with: its bar's kind and colour.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Beside {
    Floor,
    Python,
    Peer(&'static str),
}

impl Beside {
    fn label(self) -> String {
        match self {
            Beside::Floor => "vs its floor (1 = at the floor)".into(),
            Beside::Python => "× faster than Python's multiprocessing".into(),
            Beside::Peer(p) => format!("× faster than {p} (Rust)"),
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Beside::Floor => RGBColor(70, 110, 160),
            Beside::Python => RGBColor(230, 160, 40),
            Beside::Peer("ipc_channel") => RGBColor(40, 150, 120),
            Beside::Peer("interprocess") => RGBColor(140, 90, 170),
            Beside::Peer("procspawn") => RGBColor(200, 70, 70),
            Beside::Peer(_) => RGBColor(120, 120, 120),
        }
    }
}

/// A peer's figure (`peers.<peer>.<figure>`) and the figure of ours it is measured beside.
const PEER_FIGURES: [(&str, &str, &str); 6] = [
    ("ipc_channel", "bytes_1mib_gbps", "pipe_bytes_gbps"),
    ("ipc_channel", "msgs_per_s_1p1c", "queue_msgs_per_s.1p1c"),
    ("ipc_channel", "rtt_us", "pipe_rtt_us"),
    ("interprocess", "rtt_us", "pipe_rtt_us"),
    ("procspawn", "spawn_join_us", "spawn_join_us.spawn"),
    (
        "procspawn",
        "pool_map_tasks_per_s",
        "pool_map_tasks_per_s.chunksize1",
    ),
];

/// One figure's bars: its key and each ratio, turned so that more is better.
struct Figure {
    key: String,
    bars: Vec<(Beside, f64)>,
}

/// Whether a smaller figure is the better one: a time (its unit ends a part of its key:
/// `spawn_join_us.fork`, `kill_notice_ms.pool_worker`; not `queue_msgs_per_s`).
fn lower_is_better(key: &str) -> bool {
    key.split('.')
        .any(|part| ["_us", "_ms", "_ns"].iter().any(|u| part.ends_with(u)))
}

/// The parts in the table's order: a figure's place is its key's first matching prefix.
const ORDER: [&str; 10] = [
    "spawn_",
    "pipe_",
    "lock_",
    "shm_",
    "queue_",
    "dead_",
    "pool_",
    "mpi_",
    "executor_",
    "manager_",
];

/// The figure at a dotted path of the JSON line (`queue_msgs_per_s.1p1c`).
fn lookup(v: &Value, dotted: &str) -> Option<f64> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))?.as_f64()
}

/// The figures that have at least one ratio, part by part.
fn figures(json: &Value) -> Vec<Figure> {
    let mut keys: Vec<String> = ["ratio_to_floor", "times_better_than_python"]
        .iter()
        .filter_map(|k| json.get(k)?.as_object())
        .flat_map(|m| m.keys().cloned())
        .chain(PEER_FIGURES.iter().map(|(_, _, ours)| (*ours).to_string()))
        .collect();
    keys.sort_by_key(|k| {
        let part = ORDER.iter().position(|p| k.starts_with(p));
        (part.unwrap_or(ORDER.len()), k.clone())
    });
    keys.dedup();
    let positive = |x: f64| (x.is_finite() && x > 0.0).then_some(x);
    keys.into_iter()
        .filter_map(|key| {
            let turn = |ours_over_other: f64| {
                if lower_is_better(&key) {
                    1.0 / ours_over_other
                } else {
                    ours_over_other
                }
            };
            let mut bars = Vec::new();
            if let Some(r) = json
                .get("ratio_to_floor")
                .and_then(|m| m.get(&key)?.as_f64())
            {
                bars.extend(positive(turn(r)).map(|r| (Beside::Floor, r)));
            }
            if let Some(x) = json
                .get("times_better_than_python")
                .and_then(|m| m.get(&key)?.as_f64())
            {
                bars.extend(positive(x).map(|x| (Beside::Python, x)));
            }
            let ours = lookup(json, &key);
            for (peer, figure, _) in PEER_FIGURES.iter().filter(|(_, _, o)| *o == key) {
                let theirs = json
                    .get("peers")
                    .and_then(|p| p.get(peer)?.get(figure)?.as_f64());
                if let (Some(o), Some(t)) = (ours, theirs) {
                    bars.extend(positive(turn(o / t)).map(|r| (Beside::Peer(peer), r)));
                }
            }
            (!bars.is_empty()).then_some(Figure { key, bars })
        })
        .collect()
}

/// The machine and the day, for the chart's subtitle: `2 cores, AMD EPYC ..., 2026-12-07`.
fn machine_and_date() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{} cores, {cpu}, {y:04}-{m:02}-{d:02}", mproc::cpu_count())
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The height of a bar and the gap after a figure's bars, in the chart's y units.
const BAR: f64 = 1.0;
const GAP: f64 = 0.8;

/// Draws the chart of a saved JSON line (the last line of the file `saved`) into `file`.
pub fn redraw(saved: &str, file: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(saved).map_err(|e| e.to_string())?;
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("no JSON line")?;
    let json: Value = serde_json::from_str(last).map_err(|e| e.to_string())?;
    write_svg(&json, file)
}

/// Writes the chart of the JSON line `json` to `file` as SVG.
pub fn write_svg(json: &Value, file: &str) -> Result<(), String> {
    let figures = figures(json);
    if figures.is_empty() {
        return Err("no figure has a ratio to draw".into());
    }
    let units: f64 = figures
        .iter()
        .map(|f| f.bars.len() as f64 * BAR + GAP)
        .sum();
    let height = HEAD + 60 + (units * 13.0) as u32;
    let root = SVGBackend::new(file, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (head, body) = root.split_vertically(HEAD);
    draw_head(&head, &figures).map_err(|e| e.to_string())?;
    draw(&body, &figures, units).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// The chart's width, and the height of its head (title, machine, legend), in pixels.
const WIDTH: u32 = 1000;
const HEAD: u32 = 96;

/// The title, the machine and day, and the legend: one entry per kind of bar drawn.
fn draw_head<DB: DrawingBackend>(
    head: &DrawingArea<DB, Shift>,
    figures: &[Figure],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let left =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    head.draw(&Text::new(
        "mproc, one run of cargo xtask bench: each figure as ratios, log scale, right of 1× is better for mproc",
        (12, 14),
        TextStyle::from(("sans-serif", 19).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    head.draw(&Text::new(machine_and_date(), (12, 40), left.clone()))?;
    // The floor, Python, then the peers by name.
    let mut kinds: Vec<Beside> = figures
        .iter()
        .flat_map(|f| f.bars.iter().map(|b| b.0))
        .collect();
    kinds.sort_by_key(|k| match k {
        Beside::Floor => (0, ""),
        Beside::Python => (1, ""),
        Beside::Peer(p) => (2, *p),
    });
    kinds.dedup();
    let (mut x, mut y) = (12, 70);
    for kind in kinds {
        let label = kind.label();
        // About the width of the legend's text, and room for the swatch.
        let width = 24 + label.chars().count() as i32 * 8 + 18;
        if x + width > WIDTH as i32 {
            (x, y) = (12, y + 20);
        }
        head.draw(&Rectangle::new(
            [(x, y - 6), (x + 16, y + 6)],
            kind.color().filled(),
        ))?;
        head.draw(&Text::new(label, (x + 22, y), left.clone()))?;
        x += width;
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figures: &[Figure],
    units: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let ratios = figures.iter().flat_map(|f| f.bars.iter().map(|b| b.1));
    let (lo, hi) = ratios.fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let x_range = 10f64.powf((lo / 1.5).log10().floor())..10f64.powf((hi * 4.0).log10().ceil());
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .margin_left(250)
        .margin_right(30)
        .x_label_area_size(30)
        .build_cartesian_2d(x_range.clone().log_scale(), 0.0..units)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("ratio (log scale)")
        .x_label_formatter(&|x| format!("{x}×"))
        .label_style(("sans-serif", 14))
        .draw()?;
    // The 1× line: where mproc equals what it is compared with.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, units)],
        BLACK.stroke_width(2),
    )))?;
    // Labels are drawn on `root`, whose pixels start at its own corner.
    let (bx0, by0) = root.get_base_pixel();
    let at = |(x, y): (i32, i32)| (x - bx0, y - by0);
    let mut top = units;
    let label_style =
        TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for f in figures {
        let (x0, _) = at(chart.backend_coord(&(x_range.start, 0.0)));
        let (_, y) = at(chart.backend_coord(&(1.0, top - f.bars.len() as f64 * BAR / 2.0)));
        root.draw(&Text::new(f.key.clone(), (x0 - 8, y), label_style.clone()))?;
        for &(kind, ratio) in &f.bars {
            let (y0, y1) = (top - BAR * 0.95, top);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(1.0, y0), (ratio, y1)],
                kind.color().filled(),
            )))?;
            let (bx, by) = at(chart.backend_coord(&(ratio, (y0 + y1) / 2.0)));
            // The ratio at the bar's end, outside it.
            let (anchor, dx) = if ratio >= 1.0 {
                (HPos::Left, 4)
            } else {
                (HPos::Right, -4)
            };
            let style =
                TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(anchor, VPos::Center));
            root.draw(&Text::new(fmt_ratio(ratio), (bx + dx, by), style))?;
            top -= BAR;
        }
        top -= GAP;
    }
    Ok(())
}

/// A ratio, `×` after it: `0.87×`, `4.2×`, `1300×`.
fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 1.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_told_from_rates_by_their_unit() {
        assert!(lower_is_better("spawn_join_us.fork"));
        assert!(lower_is_better("kill_notice_ms.pool_worker"));
        assert!(lower_is_better("lock_uncontended_ns"));
        assert!(!lower_is_better("queue_msgs_per_s.1p1c"));
        assert!(!lower_is_better("pipe_bytes_gbps"));
    }

    /// Each ratio is turned so that more is better for mproc: a time's floor ratio and a
    /// slower peer's time both give more than 1 when mproc is the faster.
    #[test]
    fn ratios_point_right_when_mproc_is_better() {
        let json = serde_json::json!({
            "pipe_rtt_us": 20.0,
            "queue_msgs_per_s": {"1p1c": 3e6},
            "ratio_to_floor": {"pipe_rtt_us": 1.25, "queue_msgs_per_s.1p1c": 0.5},
            "times_better_than_python": {"pipe_rtt_us": 2.0},
            "peers": {
                "interprocess": {"rtt_us": 40.0},
                "ipc_channel": {"msgs_per_s_1p1c": 1e6},
            },
        });
        let figures = figures(&json);
        let bars = |key: &str| {
            figures
                .iter()
                .find(|f| f.key == key)
                .map(|f| f.bars.clone())
                .unwrap_or_default()
        };
        let pipe = bars("pipe_rtt_us");
        assert_eq!(pipe.len(), 3);
        assert!(pipe.contains(&(Beside::Floor, 0.8)));
        assert!(pipe.contains(&(Beside::Python, 2.0)));
        assert!(pipe.contains(&(Beside::Peer("interprocess"), 2.0)));
        let queue = bars("queue_msgs_per_s.1p1c");
        assert!(queue.contains(&(Beside::Floor, 0.5)));
        assert!(queue.contains(&(Beside::Peer("ipc_channel"), 3.0)));
        // A figure with no ratio is left out.
        assert!(bars("pipe_bytes_gbps").is_empty());
    }

    #[test]
    fn a_chart_is_written() {
        let json = serde_json::json!({"ratio_to_floor": {"pipe_rtt_us": 1.1}});
        let file = std::env::temp_dir().join(format!("mproc-plot-{}.svg", std::process::id()));
        write_svg(&json, file.to_str().unwrap()).unwrap();
        let svg = std::fs::read_to_string(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(svg.starts_with("<svg") && svg.contains("pipe_rtt_us") && svg.contains("0.91×"));
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_794), (2026, 12, 7));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
