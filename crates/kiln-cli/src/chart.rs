//! Charts through plotters: training curves (`kiln plot`), bars with confidence intervals (permutation
//! importance), signed bars (a row's attributions) and heatmaps over an image (`kiln explain`). Each is
//! drawn once for any plotters backend; PNGs render into a pixel buffer encoded by the png crate, SVGs as
//! text. Labels use DejaVu Sans from the dejavu crate through ab_glyph, so a fresh machine needs no fonts.

use kiln::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

pub const FONT: &str = "sans-serif";
pub const TRAIN: RGBColor = RGBColor(31, 119, 180);
pub const VAL: RGBColor = RGBColor(255, 127, 14);
/// Attributions toward the explained output, and against it.
pub const FOR: RGBColor = RGBColor(214, 39, 40);
pub const AGAINST: RGBColor = RGBColor(31, 119, 180);

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())] {
            plotters::style::register_font(FONT, style, bytes).unwrap_or_else(|_| panic!("DejaVu Sans is a font"));
        }
    });
}

/// A drawing failure as kiln's error.
pub fn failed(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing a chart: {e}"))
}

/// A PNG of `size` pixels drawn by `draw`.
pub fn png(size: (u32, u32), draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>) -> Result<Vec<u8>> {
    fonts();
    let mut rgb = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(failed)?;
    }
    encode_png(size, &rgb)
}

/// RGB pixels, row by row, as a PNG file's bytes.
pub fn encode_png((w, h): (u32, u32), rgb: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(failed)?;
    writer.write_image_data(rgb).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// An SVG of `size` drawn by `draw`.
pub fn svg(size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>) -> Result<String> {
    fonts();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(failed)?;
    }
    Ok(text)
}

/// A named, coloured line of (x, y) points.
pub type Series<'a> = (&'a str, RGBColor, &'a [(f64, f64)]);

/// One panel of curves: a title and series of (x, y), each with its name and colour.
pub struct Curves<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub series: Vec<Series<'a>>,
}

/// Line charts side by side, one per panel, each with its legend.
pub fn curves<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panels: &[Curves]) -> Result<()> {
    area.fill(&WHITE).map_err(failed)?;
    let cells = area.split_evenly((1, panels.len().max(1)));
    for (cell, p) in cells.iter().zip(panels) {
        let pts = p.series.iter().flat_map(|s| s.2.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (1.0, 2.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        // A flat series (a constant learning rate) gets a band around it, so its ticks differ.
        let pad = if y1 - y0 < 1e-12 { 0.5 * y1.abs().max(1e-3) } else { (y1 - y0) * 0.08 };
        let whole = p.series.iter().flat_map(|s| s.2.iter()).all(|&(x, _)| x.fract() == 0.0);
        // The legend goes where the curves do not end: low when they end high.
        let ends_high = p.series.iter().filter_map(|s| s.2.last()).any(|&(_, y)| y > y0 + 0.6 * (y1 - y0));
        let mut chart = ChartBuilder::on(cell)
            .caption(p.title, (FONT, 17))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc(p.x_label)
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|x| if whole { format!("{x:.0}") } else { number(*x) })
            .y_label_formatter(&|y| number(*y))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(failed)?;
        for &(name, color, points) in p.series.iter().filter(|s| !s.2.is_empty()) {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(failed)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(failed)?;
        }
        chart
            .configure_series_labels()
            .position(if ends_high { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(failed)?;
    }
    Ok(())
}

/// A tick label: short, in scientific notation when very small or large.
pub fn number(v: f64) -> String {
    let trim = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    // Ticks at zero come out as rounding's leftovers (−1.4e-17).
    if v.abs() < 1e-12 {
        return "0".into();
    }
    if v.abs() < 1e-3 || v.abs() >= 1e5 {
        let s = format!("{v:.2e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        return format!("{}e{exp}", trim(mantissa.to_string()));
    }
    trim(format!("{v:.5}"))
}

/// One bar: its label, value, and an interval drawn as a whisker.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// Horizontal bars, the first at the top, red toward the explained output and blue against it.
pub fn bars<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, title: &str, x_label: &str, bars: &[Bar]) -> Result<()> {
    area.fill(&WHITE).map_err(failed)?;
    let n = bars.len().max(1);
    let ends =
        bars.iter().flat_map(|b| [b.value, b.interval.map_or(b.value, |i| i.0), b.interval.map_or(b.value, |i| i.1)]);
    let (lo, hi) = ends.fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.06).max(1e-9);
    let label_width = bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(4).clamp(4, 40) as u32 * 8 + 16;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_width)
        // n segments (0 to n − 1: a segmented range includes its end).
        .build_cartesian_2d((lo - pad)..(hi + pad), (0..(n - 1).max(1)).into_segmented())
        .map_err(failed)?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            (n - 1).checked_sub(*i).and_then(|k| bars.get(k)).map(|b| short(&b.label, 40)).unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .x_label_formatter(&|x| number(*x))
        .x_desc(x_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(failed)?;
    // Bar k is drawn in row n − 1 − k, so the first bar is at the top.
    let row = |k: usize| n - 1 - k;
    let top_of = |r: usize| if r + 1 < n { SegmentValue::Exact(r + 1) } else { SegmentValue::Last };
    chart
        .draw_series(bars.iter().enumerate().map(|(k, b)| {
            let color = if b.value >= 0.0 { FOR } else { AGAINST };
            let mut r = Rectangle::new(
                [(0.0, SegmentValue::Exact(row(k))), (b.value, top_of(row(k)))],
                color.mix(0.8).filled(),
            );
            r.set_margin(3, 3, 0, 0);
            r
        }))
        .map_err(failed)?;
    for (k, b) in bars.iter().enumerate() {
        if let Some((l, h)) = b.interval {
            let y = || SegmentValue::CenterOf(row(k));
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(l, y()), (h, y())], BLACK.stroke_width(2))))
                .map_err(failed)?;
        }
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
            BLACK.stroke_width(1),
        )))
        .map_err(failed)?;
    Ok(())
}

/// At most `n` characters, an ellipsis marking a cut.
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

/// The image (`h`×`w`×`c`, values in [0, 1]) beside its attributions per pixel (`h`×`w`), those drawn as a
/// red (toward) / blue (against) overlay on the image in grey, scaled to the largest |attribution|; a
/// caption says what was explained.
pub fn heatmap(image: &[f32], (h, w, c): (usize, usize, usize), attr: &[f32], title: &str) -> Result<Vec<u8>> {
    let scale = (320 / h.max(w)).max(1) as u32;
    let (pw, ph) = (w as u32 * scale, h as u32 * scale);
    let size = (2 * pw + 60, ph + 70);
    let top = attr.iter().fold(0f32, |m, a| m.max(a.abs())).max(1e-12);
    let grey = |y: usize, x: usize| -> f32 { (0..c).map(|k| image[(y * w + x) * c + k]).sum::<f32>() / c as f32 };
    png(size, |root| {
        root.fill(&WHITE).map_err(failed)?;
        root.titled(title, (FONT, 16)).map_err(failed)?;
        root.draw(&Text::new("image", (20, 30), (FONT, 13))).map_err(failed)?;
        root.draw(&Text::new("attribution (red: toward, blue: against)", (pw as i32 + 40, 30), (FONT, 13)))
            .map_err(failed)?;
        for y in 0..h {
            for x in 0..w {
                let at = |x0: u32| {
                    let (px, py) = (x0 as i32 + (x as u32 * scale) as i32, 50 + (y as u32 * scale) as i32);
                    [(px, py), (px + scale as i32, py + scale as i32)]
                };
                let pixel = if c == 3 {
                    let i = (y * w + x) * 3;
                    RGBColor(byte(image[i]), byte(image[i + 1]), byte(image[i + 2]))
                } else {
                    let g = byte(grey(y, x));
                    RGBColor(g, g, g)
                };
                root.draw(&Rectangle::new(at(20), pixel.filled())).map_err(failed)?;
                // The overlay: the grey image dimmed, the attribution's colour over it by its strength.
                let a = (attr[y * w + x] / top).clamp(-1.0, 1.0);
                let base = 0.35 + 0.4 * grey(y, x);
                let tint = if a >= 0.0 { FOR } else { AGAINST };
                let mix = |t: u8| byte(base * (1.0 - a.abs()) + (t as f32 / 255.0) * a.abs());
                let color = RGBColor(mix(tint.0), mix(tint.1), mix(tint.2));
                root.draw(&Rectangle::new(at(pw + 40), color.filled())).map_err(failed)?;
            }
        }
        Ok(())
    })
}

/// Words in reading order, each on a background shaded by its weight in [−1, 1] (red toward, blue against),
/// wrapped to `width` pixels under a caption: a text's attributions as a picture.
pub fn shaded_words(title: &str, words: &[(String, f32)], width: u32) -> Result<Vec<u8>> {
    fonts();
    let style = TextStyle::from((FONT, 18).into_font());
    let (line_h, pad, left) = (30i32, 4i32, 16i32);
    // Lay the words out once to know the height.
    let measure = |s: &str| -> Result<i32> {
        let (w, _) = BitMapBackend::with_buffer(&mut [0u8; 3], (1, 1)).estimate_text_size(s, &style).map_err(failed)?;
        Ok(w as i32)
    };
    let space = measure("n")?;
    let mut placed = Vec::with_capacity(words.len());
    let (mut x, mut y) = (left, 48);
    for (word, weight) in words {
        let w = measure(word)?;
        if x + w + 2 * pad > width as i32 - left && x > left {
            (x, y) = (left, y + line_h);
        }
        placed.push((x, y, w, word.as_str(), *weight));
        x += w + 2 * pad + space / 2;
    }
    let height = (y + line_h + 16) as u32;
    png((width, height), |root| {
        root.fill(&WHITE).map_err(failed)?;
        root.draw(&Text::new(title, (left, 14), (FONT, 15))).map_err(failed)?;
        for &(x, y, w, word, weight) in &placed {
            let s = weight.clamp(-1.0, 1.0);
            let tint = if s >= 0.0 { FOR } else { AGAINST };
            let mix = |t: u8| byte(1.0 - s.abs() * 0.85 * (1.0 - t as f32 / 255.0));
            let bg = RGBColor(mix(tint.0), mix(tint.1), mix(tint.2));
            root.draw(&Rectangle::new([(x, y - 3), (x + w + 2 * pad, y + line_h - 7)], bg.filled())).map_err(failed)?;
            root.draw(&Text::new(word.to_string(), (x + pad, y), style.clone())).map_err(failed)?;
        }
        Ok(())
    })
}

fn byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}
