//! The PNG chart: per fixed rate, server CPU per query and latency (p50 and
//! p99) by contender, as horizontal bars with their values; then idle CPU
//! by contender and the agent's RSS by cluster size, then saturation
//! throughput and the hot set's kernel share during a unique-name flood,
//! each with its goal as a red line (the userspace path's goals come from
//! the peers' figures); last the kernel path's goals: how many times below
//! the better peer its CPU per query is, and one hit's cost in TestRun.

use std::path::Path;

use anyhow::Result;

use crate::png::{Canvas, Rgb};
use crate::report::{
    Bound, FLOOD_LABEL, Goal, HOT_SET_GOAL, IDLE_CPU_GOAL, KERNEL_HIT_GOAL, KERNEL_PATHS,
    KERNEL_RATIO_GOAL, RSS_GOAL_BYTES, Report, XDP_PROGRAM, peer_ratio_metric,
};

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [30, 30, 30];
const CPU: Rgb = [52, 101, 164];
const P50: Rgb = [78, 154, 6];
const P99: Rgb = [196, 160, 0];
const IDLE: Rgb = [117, 80, 123];
const RSS: Rgb = [206, 92, 0];
const SHARE: Rgb = [32, 74, 135];
const GOAL: Rgb = [204, 0, 0];
const SCALE: usize = 2;
const ROW: usize = 34;
const LABEL_W: usize = 250;
const BAR_W: usize = 330;
const PANEL_W: usize = LABEL_W + BAR_W + 150;

struct Bar {
    value: f64,
    color: Rgb,
    text: String,
}

pub fn write(report: &Report, path: &Path) -> Result<()> {
    let contenders: Vec<String> = report
        .contenders()
        .into_iter()
        .filter(|c| {
            report
                .rates()
                .iter()
                .any(|r| report.get(c, &format!("cpu_per_query@{r}")).is_some())
        })
        .collect();
    let rates = report.rates();
    let panel_h = 60 + contenders.len() * ROW;
    let idle = idle_bars(report);
    let rss = rss_bars(report);
    let saturation = bars_of(report, "saturation_qps", 1.0, CPU, 0);
    let goals_h = 60 + idle.len().max(rss.len()).max(1) * ROW;
    let share = bars_of(report, "hot_set_kernel_share", 100.0, SHARE, 2);
    // Saturation and the flood's share side by side, in one row.
    let last_h = 60 + saturation.len().max(share.len()).max(1) * ROW;
    let ratios = kernel_ratio_bars(report);
    let hit = bars_of(report, "testrun_hit", 1.0, CPU, 0)
        .into_iter()
        .filter(|(c, _)| c == XDP_PROGRAM)
        .collect::<Vec<_>>();
    let kernel_h = 60 + ratios.len().max(hit.len()).max(1) * ROW;
    let height = 50 + rates.len().max(1) * panel_h + goals_h + last_h + kernel_h + 20;
    let mut canvas = Canvas::new(2 * PANEL_W + 20, height, WHITE);
    canvas.text(
        10,
        10,
        "nodedns bench: server CPU per answered query and latency",
        3,
        INK,
    );
    if rates.is_empty() {
        canvas.text(10, 60, "no load figures (dry run)", SCALE, INK);
    }
    for (r, rate) in rates.iter().enumerate() {
        let top = 50 + r * panel_h;
        let cpu: Vec<Vec<Bar>> = contenders
            .iter()
            .map(|c| {
                let v = report
                    .get(c, &format!("cpu_per_query@{rate}"))
                    .map_or(0.0, |e| e.median);
                vec![Bar {
                    value: v,
                    color: CPU,
                    text: format!("{v:.0} ns"),
                }]
            })
            .collect();
        let latency: Vec<Vec<Bar>> = contenders
            .iter()
            .map(|c| {
                let get = |m: &str| {
                    report
                        .get(c, &format!("{m}@{rate}"))
                        .map_or(0.0, |e| e.median)
                };
                let (p50, p99) = (get("latency_p50"), get("latency_p99"));
                vec![
                    Bar {
                        value: p50,
                        color: P50,
                        text: format!("{p50:.0}"),
                    },
                    Bar {
                        value: p99,
                        color: P99,
                        text: format!("{p99:.0} us"),
                    },
                ]
            })
            .collect();
        let goal = report.userspace_goal(&format!("cpu_per_query@{rate}"));
        panel(
            &mut canvas,
            10,
            top,
            &format!("server CPU/query @{rate} qps{}", goal_note(goal)),
            &contenders,
            &cpu,
            goal.map(|g| g.goal),
        );
        panel(
            &mut canvas,
            PANEL_W + 10,
            top,
            &format!("latency p50 / p99 (us) @{rate} qps"),
            &contenders,
            &latency,
            None,
        );
    }
    let top = 50 + rates.len().max(1) * panel_h;
    let title = format!("idle CPU ms/s (goal {IDLE_CPU_GOAL})");
    panel_of(&mut canvas, 10, top, &title, idle, Some(IDLE_CPU_GOAL));
    let goal_mib = RSS_GOAL_BYTES / MIB;
    let title = format!("agent RSS MiB (goal {goal_mib:.0} at 50k svc)");
    panel_of(&mut canvas, PANEL_W + 10, top, &title, rss, Some(goal_mib));
    let top = top + goals_h;
    let goal = report.userspace_goal("saturation_qps");
    let title = format!("saturation qps{}", goal_note(goal));
    panel_of(
        &mut canvas,
        10,
        top,
        &title,
        saturation,
        goal.map(|g| g.goal),
    );
    let names = report
        .get(FLOOD_LABEL, "flood_names")
        .map_or(0.0, |e| e.median);
    let title = format!(
        "hot set answered by the kernel, % ({:.0}k-name flood, goal {:.0})",
        names / 1000.0,
        HOT_SET_GOAL * 100.0
    );
    let goal = Some(HOT_SET_GOAL * 100.0);
    panel_of(&mut canvas, PANEL_W + 10, top, &title, share, goal);
    let top = top + last_h;
    let title =
        format!("kernel path: peers' CPU/query over its own (goal {KERNEL_RATIO_GOAL:.0}x)");
    panel_of(
        &mut canvas,
        10,
        top,
        &title,
        ratios,
        Some(KERNEL_RATIO_GOAL),
    );
    let title = format!("XDP hit in TestRun, ns (goal {KERNEL_HIT_GOAL:.0})");
    panel_of(
        &mut canvas,
        PANEL_W + 10,
        top,
        &title,
        hit,
        Some(KERNEL_HIT_GOAL),
    );
    canvas.write_png(path)
}

/// The kernel paths' ratio to the better peer, one row per path and rate.
fn kernel_ratio_bars(report: &Report) -> Vec<(String, Vec<Bar>)> {
    let mut rows = Vec::new();
    for rate in report.rates() {
        for xdp in KERNEL_PATHS {
            if let Some(e) = report.get(xdp, &peer_ratio_metric(&rate)) {
                let label = format!("{} @{rate}", xdp.trim_start_matches("nodedns-"));
                let bar = Bar {
                    value: e.median,
                    color: CPU,
                    text: format!("{:.1}x", e.median),
                };
                rows.push((label, vec![bar]));
            }
        }
    }
    rows
}

/// " (userspace goal at most N: met)" for a panel title, when the run has it.
fn goal_note(goal: Option<&Goal>) -> String {
    let Some(g) = goal else {
        return String::new();
    };
    let verdict = match g.met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    // The chart's font has no '<' or '>'.
    let bound = match g.bound {
        Bound::AtMost => "at most",
        Bound::AtLeast => "at least",
    };
    format!(" (userspace goal {bound} {:.0}: {verdict})", g.goal)
}

const MIB: f64 = (1 << 20) as f64;

/// Idle CPU of every contender and memory run that has it.
fn idle_bars(report: &Report) -> Vec<(String, Vec<Bar>)> {
    bars_of(report, "idle_cpu", 1.0, IDLE, 2)
}

/// The agent's RSS per memory run, in cluster-size order.
fn rss_bars(report: &Report) -> Vec<(String, Vec<Bar>)> {
    bars_of(report, "agent_rss", 1.0 / MIB, RSS, 1)
}

/// One bar per contender with `metric`, its median times `scale`.
fn bars_of(
    report: &Report,
    metric: &str,
    scale: f64,
    color: Rgb,
    digits: usize,
) -> Vec<(String, Vec<Bar>)> {
    report
        .contenders()
        .into_iter()
        .filter_map(|c| {
            let v = report.get(&c, metric)?.median * scale;
            let text = format!("{v:.digits$}");
            Some((
                c,
                vec![Bar {
                    value: v,
                    color,
                    text,
                }],
            ))
        })
        .collect()
}

/// [`panel`] of labelled rows, as [`bars_of`] makes them.
fn panel_of(
    canvas: &mut Canvas,
    x: usize,
    y: usize,
    title: &str,
    rows: Vec<(String, Vec<Bar>)>,
    goal: Option<f64>,
) {
    let (labels, bars): (Vec<String>, Vec<Vec<Bar>>) = rows.into_iter().unzip();
    panel(canvas, x, y, title, &labels, &bars, goal);
}

/// Bars scaled to the largest value (or the goal, if larger); the goal,
/// when given, is a red line across the rows.
fn panel(
    canvas: &mut Canvas,
    x: usize,
    y: usize,
    title: &str,
    labels: &[String],
    bars: &[Vec<Bar>],
    goal: Option<f64>,
) {
    canvas.text(x, y + 10, title, SCALE, INK);
    let max = bars
        .iter()
        .flatten()
        .map(|b| b.value)
        .chain(goal)
        .fold(0.0, f64::max)
        .max(1e-9);
    for (i, (label, row)) in labels.iter().zip(bars).enumerate() {
        let top = y + 40 + i * ROW;
        canvas.text(x, top + 8, label, SCALE, INK);
        let h = (ROW - 8) / row.len();
        let mut end_text = String::new();
        for (j, bar) in row.iter().enumerate() {
            let w = ((bar.value / max) * BAR_W as f64).round().max(1.0) as usize;
            canvas.rect(x + LABEL_W, top + j * h, w, h - 1, bar.color);
            if !end_text.is_empty() {
                end_text.push('/');
            }
            end_text.push_str(&bar.text);
        }
        canvas.text(x + LABEL_W + BAR_W + 6, top + 8, &end_text, SCALE, INK);
    }
    if let Some(goal) = goal {
        let gx = x + LABEL_W + ((goal / max) * BAR_W as f64).round() as usize;
        canvas.rect(gx, y + 36, 2, labels.len().max(1) * ROW, GOAL);
    }
}
