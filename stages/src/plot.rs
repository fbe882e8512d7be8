//! Small PNG charts with no font files: a pixel [`Canvas`] (rectangles,
//! lines, text in a built-in 3x5 bitmap font) and a [`histogram_png`] built on
//! it. Loss curves and piano rolls can use the same canvas.

use std::path::Path;

pub type Rgb = [u8; 3];
pub const WHITE: Rgb = [255, 255, 255];
pub const BLACK: Rgb = [0, 0, 0];
pub const GREY: Rgb = [200, 200, 200];
pub const BLUE: Rgb = [66, 110, 180];
pub const RED: Rgb = [200, 60, 50];

/// An RGB image, origin at the top left.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32, background: Rgb) -> Canvas {
        let pixels = background
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// Sets one pixel; outside the canvas is ignored.
    pub fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&color);
    }

    pub fn get(&self, x: u32, y: u32) -> Rgb {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// A filled rectangle (clipped).
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        for yy in y.max(0)..(y + h).min(self.height as i64) {
            for xx in x.max(0)..(x + w).min(self.width as i64) {
                self.set(xx, yy, color);
            }
        }
    }

    /// A one-pixel line (Bresenham).
    pub fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, color);
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

    /// Text in the 3x5 font, each font pixel `scale` pixels wide; returns
    /// the width drawn. Letters are drawn upper case; unknown characters as
    /// blanks.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: Rgb) -> i64 {
        let mut cx = x;
        for c in text.chars() {
            let rows = glyph(c);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        self.fill_rect(cx + col * scale, y + r as i64 * scale, scale, scale, color);
                    }
                }
            }
            cx += 4 * scale;
        }
        cx - x
    }

    /// Width of `text` as drawn by [`Canvas::text`].
    pub fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * 4 * scale
    }

    /// Writes the canvas as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> std::io::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&self.pixels)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}

/// The 5 rows (3 bits each, left bit first) of a character.
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 3, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '.' => [0, 0, 0, 0, 2],
        ',' => [0, 0, 0, 2, 4],
        '-' => [0, 0, 7, 0, 0],
        ':' => [0, 2, 0, 2, 0],
        '/' => [1, 1, 2, 4, 4],
        '%' => [5, 1, 2, 4, 5],
        '(' => [2, 4, 4, 4, 2],
        ')' => [2, 1, 1, 1, 2],
        '_' => [0, 0, 0, 0, 7],
        '=' => [0, 7, 0, 7, 0],
        '<' => [1, 2, 4, 2, 1],
        '>' => [4, 2, 1, 2, 4],
        _ => [0; 5],
    }
}

/// A "nice" axis step (1, 2 or 5 times a power of ten) giving about
/// `ticks` ticks up to `max`.
pub fn nice_step(max: f64, ticks: u32) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / ticks.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// One bar of a histogram: the bin `[low, high)` and its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bin {
    pub low: u64,
    pub high: u64,
    pub count: u64,
}

/// Draws a histogram with axes, tick labels, a title and axis labels, and
/// optional vertical markers (value, label) such as filter thresholds.
pub fn histogram_png(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    bins: &[Bin],
    markers: &[(u64, &str)],
) -> std::io::Result<()> {
    let (width, height) = (900i64, 520i64);
    let (left, right, top, bottom) = (80i64, 30i64, 50i64, 70i64);
    let mut canvas = Canvas::new(width as u32, height as u32, WHITE);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max_count = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let y_step = nice_step(max_count as f64, 5).max(1.0);
    let y_max = (max_count as f64 / y_step).ceil() * y_step;
    let x_min = bins.first().map_or(0, |b| b.low);
    let x_max = bins.last().map_or(1, |b| b.high).max(x_min + 1);
    let x_of = |v: u64| {
        left + ((v.saturating_sub(x_min)) as f64 / (x_max - x_min) as f64 * plot_w as f64) as i64
    };
    let y_of = |c: f64| top + plot_h - (c / y_max * plot_h as f64) as i64;

    // Grid lines and y tick labels.
    let mut tick = 0.0;
    while tick <= y_max + 1e-9 {
        let y = y_of(tick);
        canvas.line(left, y, left + plot_w, y, GREY);
        let label = format!("{}", tick as u64);
        canvas.text(
            left - 8 - Canvas::text_width(&label, 2),
            y - 5,
            &label,
            2,
            BLACK,
        );
        tick += y_step;
    }
    for bin in bins {
        let (x0, x1) = (x_of(bin.low), x_of(bin.high));
        let y = y_of(bin.count as f64);
        canvas.fill_rect(x0 + 1, y, (x1 - x0 - 1).max(1), top + plot_h - y, BLUE);
    }
    // Axes.
    canvas.line(left, top, left, top + plot_h, BLACK);
    canvas.line(left, top + plot_h, left + plot_w, top + plot_h, BLACK);
    // X tick labels at nice values.
    let x_step = nice_step((x_max - x_min) as f64, 8).max(1.0) as u64;
    let mut v = x_min.div_ceil(x_step) * x_step;
    while v <= x_max {
        let x = x_of(v);
        canvas.line(x, top + plot_h, x, top + plot_h + 5, BLACK);
        let label = v.to_string();
        canvas.text(
            x - Canvas::text_width(&label, 2) / 2,
            top + plot_h + 10,
            &label,
            2,
            BLACK,
        );
        v += x_step;
    }
    for &(value, label) in markers {
        if (x_min..=x_max).contains(&value) {
            let x = x_of(value);
            for y in (top..top + plot_h).step_by(6) {
                canvas.line(x, y, x, (y + 3).min(top + plot_h), RED);
            }
            canvas.text(x + 4, top + 4, label, 2, RED);
        }
    }
    canvas.text(
        (width - Canvas::text_width(title, 3)) / 2,
        12,
        title,
        3,
        BLACK,
    );
    canvas.text(
        left + (plot_w - Canvas::text_width(x_label, 2)) / 2,
        height - 24,
        x_label,
        2,
        BLACK,
    );
    canvas.text(8, top - 20, y_label, 2, BLACK);
    canvas.write_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(7.0, 5), 2.0);
        assert_eq!(nice_step(10_000.0, 8), 2000.0);
        assert_eq!(nice_step(0.0, 5), 1.0);
    }

    #[test]
    fn text_and_lines_draw_pixels() {
        let mut c = Canvas::new(20, 10, WHITE);
        let w = c.text(0, 0, "1", 1, BLACK);
        assert_eq!(w, 4);
        assert_eq!(c.get(1, 0), BLACK, "the top of a 1");
        assert_eq!(c.get(0, 0), WHITE);
        c.line(0, 9, 19, 9, RED);
        assert_eq!(c.get(19, 9), RED);
        c.fill_rect(-5, -5, 100, 6, BLUE); // clipped, no panic
        assert_eq!(c.get(3, 0), BLUE);
    }

    #[test]
    fn histogram_writes_a_png_with_bars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.png");
        let bins: Vec<Bin> = (0..10)
            .map(|i| Bin {
                low: i * 100,
                high: (i + 1) * 100,
                count: i * 3,
            })
            .collect();
        histogram_png(
            &path,
            "events per song",
            "events",
            "songs",
            &bins,
            &[(500, "max")],
        )
        .unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (900, 520));
        let blue = buf.chunks(3).filter(|p| *p == BLUE).count();
        assert!(blue > 1000, "bars drawn: {blue} blue pixels");
    }
}
