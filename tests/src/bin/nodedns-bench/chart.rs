//! The PNG chart: per fixed rate, server CPU per query and latency (p50 and
//! p99) by contender, as horizontal bars with their values.

use std::path::Path;

use anyhow::Result;

use crate::png::{Canvas, Rgb};
use crate::report::Report;

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [30, 30, 30];
const CPU: Rgb = [52, 101, 164];
const P50: Rgb = [78, 154, 6];
const P99: Rgb = [196, 160, 0];
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
    let height = 50 + rates.len().max(1) * panel_h + 20;
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
        panel(
            &mut canvas,
            10,
            top,
            &format!("server CPU per query @{rate} qps"),
            &contenders,
            &cpu,
        );
        panel(
            &mut canvas,
            PANEL_W + 10,
            top,
            &format!("latency p50 / p99 (us) @{rate} qps"),
            &contenders,
            &latency,
        );
    }
    canvas.write_png(path)
}

fn panel(
    canvas: &mut Canvas,
    x: usize,
    y: usize,
    title: &str,
    labels: &[String],
    bars: &[Vec<Bar>],
) {
    canvas.text(x, y + 10, title, SCALE, INK);
    let max = bars
        .iter()
        .flatten()
        .map(|b| b.value)
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
}
