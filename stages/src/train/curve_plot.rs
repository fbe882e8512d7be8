//! The loss-curve PNG: training loss (blue) and validation loss (red dots
//! joined by lines) against steps, with labelled axes, drawn on the shared
//! [`crate::plot::Canvas`].

use std::path::Path;

use super::curve::CurveRow;
use crate::plot::{BLACK, BLUE, Canvas, GREY, RED, WHITE, nice_step};

const W: i64 = 900;
const H: i64 = 480;
const LEFT: i64 = 80;
const RIGHT: i64 = 30;
const TOP: i64 = 50;
const BOTTOM: i64 = 60;

/// Draws the curve into `path`.
pub fn draw(rows: &[CurveRow], path: &Path) -> Result<(), String> {
    let mut canvas = Canvas::new(W as u32, H as u32, WHITE);
    let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    canvas.text(LEFT, 15, "LOSS (NATS PER TOKEN)", 2, BLACK);
    let losses = rows
        .iter()
        .flat_map(|r| std::iter::once(r.train_loss).chain(r.val_loss))
        .filter(|v| v.is_finite());
    let (lo, hi) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let write = |canvas: &Canvas| {
        canvas
            .write_png(path)
            .map_err(|e| format!("writing {}: {e}", path.display()))
    };
    if rows.is_empty() || !lo.is_finite() {
        return write(&canvas);
    }
    // The y axis runs from a whole number below the lowest loss to a tick above the highest.
    let step = nice_step((hi - lo.floor()).max(1.0), 6);
    let (lo, hi) = (
        lo.floor(),
        ((hi / step).ceil() * step).max(lo.floor() + step),
    );
    let last = rows.last().map_or(1, |r| r.step.max(1)) as f64;
    let px = |step: usize| LEFT + (step as f64 / last * plot_w as f64) as i64;
    let py = |v: f64| TOP + ((hi - v) / (hi - lo) * plot_h as f64) as i64;

    let mut tick = lo;
    while tick <= hi + 1e-9 {
        canvas.line(LEFT, py(tick), LEFT + plot_w, py(tick), GREY);
        let label = format!("{tick}");
        canvas.text(
            LEFT - 8 - Canvas::text_width(&label, 2),
            py(tick) - 5,
            &label,
            2,
            BLACK,
        );
        tick += step;
    }
    let x_step = nice_step(last, 8).max(1.0) as usize;
    for s in (0..=last as usize).step_by(x_step) {
        canvas.line(px(s), TOP + plot_h, px(s), TOP + plot_h + 5, BLACK);
        let label = s.to_string();
        canvas.text(
            px(s) - Canvas::text_width(&label, 2) / 2,
            TOP + plot_h + 10,
            &label,
            2,
            BLACK,
        );
    }
    canvas.text(
        LEFT + plot_w / 2 - Canvas::text_width("STEP", 2) / 2,
        H - 22,
        "STEP",
        2,
        BLACK,
    );
    canvas.line(LEFT, TOP, LEFT, TOP + plot_h, BLACK);
    canvas.line(LEFT, TOP + plot_h, LEFT + plot_w, TOP + plot_h, BLACK);

    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        canvas.line(
            px(a.step),
            py(a.train_loss),
            px(b.step),
            py(b.train_loss),
            BLUE,
        );
    }
    let val: Vec<(i64, i64)> = rows
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (px(r.step), py(v))))
        .collect();
    for pair in val.windows(2) {
        canvas.line(pair[0].0, pair[0].1, pair[1].0, pair[1].1, RED);
    }
    for &(x, y) in &val {
        canvas.fill_rect(x - 2, y - 2, 5, 5, RED);
    }
    // Legend, top right.
    let x = LEFT + plot_w - 190;
    canvas.fill_rect(x, 18, 14, 4, BLUE);
    canvas.text(x + 20, 15, "TRAIN", 2, BLACK);
    canvas.fill_rect(x + 90, 16, 8, 8, RED);
    canvas.text(x + 104, 15, "VALIDATION", 2, BLACK);
    write(&canvas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_decodable_png_with_both_curves() {
        let rows: Vec<CurveRow> = (1..=50)
            .map(|s| CurveRow {
                step: s,
                lr: 1e-3,
                train_loss: 5.0 / s as f64 + 1.0,
                val_loss: (s % 10 == 0).then_some(6.0 / s as f64 + 1.2),
                val_accuracy: None,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        draw(&rows, &path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let has = |c: [u8; 3]| buf.chunks_exact(3).any(|p| p == c);
        assert!(has(BLUE) && has(RED));
        draw(&[], &path).unwrap();
    }
}
