//! The loss-curve PNG: training loss (blue) and validation loss (red dots
//! joined by lines) against steps, on light grid lines at round loss values.
//! Small and self-contained on purpose: no fonts, no axes library.

use std::path::Path;

use super::curve::CurveRow;

const W: usize = 800;
const H: usize = 400;
const MARGIN: usize = 20;
const BLUE: [u8; 3] = [40, 90, 200];
const RED: [u8; 3] = [210, 40, 40];
const GRID: [u8; 3] = [225, 225, 225];
const AXIS: [u8; 3] = [90, 90, 90];

struct Canvas {
    rgb: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }
    /// Bresenham's line.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// Draws the curve into `path`.
pub fn draw(rows: &[CurveRow], path: &Path) -> Result<(), String> {
    let mut canvas = Canvas {
        rgb: vec![255; W * H * 3],
    };
    let losses = rows
        .iter()
        .flat_map(|r| std::iter::once(r.train_loss).chain(r.val_loss))
        .filter(|v| v.is_finite());
    let (lo, hi) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if rows.is_empty() || !lo.is_finite() {
        return write_png(&canvas, path);
    }
    let (lo, hi) = (lo.floor().min(lo), if hi > lo { hi } else { lo + 1.0 });
    let last = rows.last().map_or(1, |r| r.step.max(1)) as f64;
    let px = |step: usize| (MARGIN as f64 + step as f64 / last * (W - 2 * MARGIN) as f64) as i64;
    let py = |v: f64| (MARGIN as f64 + (hi - v) / (hi - lo) * (H - 2 * MARGIN) as f64) as i64;
    // A grid line at every whole loss value (nats).
    let mut g = lo.ceil();
    while g <= hi {
        canvas.line((MARGIN as i64, py(g)), ((W - MARGIN) as i64, py(g)), GRID);
        g += 1.0;
    }
    let (x0, y0, x1, y1) = (
        MARGIN as i64,
        (H - MARGIN) as i64,
        (W - MARGIN) as i64,
        MARGIN as i64,
    );
    canvas.line((x0, y0), (x1, y0), AXIS);
    canvas.line((x0, y0), (x0, y1), AXIS);
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        canvas.line(
            (px(a.step), py(a.train_loss)),
            (px(b.step), py(b.train_loss)),
            BLUE,
        );
    }
    let val: Vec<(i64, i64)> = rows
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (px(r.step), py(v))))
        .collect();
    for pair in val.windows(2) {
        canvas.line(pair[0], pair[1], RED);
    }
    for &(x, y) in &val {
        for dx in -2..=2 {
            for dy in -2..=2 {
                canvas.set(x + dx, y + dy, RED);
            }
        }
    }
    write_png(&canvas, path)
}

fn write_png(canvas: &Canvas, path: &Path) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("writing {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| fail(&e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
    writer.write_image_data(&canvas.rgb).map_err(|e| fail(&e))
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
