//! `kiln plot RUN_DIR`: training curves from the run's `log.jsonl`, one panel per quantity (loss, each
//! metric, learning rate) with the training and validation values per epoch, written as `curves.svg` and
//! `curves.png` in the run folder. Both pictures come from one description of the chart; the PNG is drawn
//! here pixel by pixel with a built-in font, so it needs no font or graphics library on the machine.

use crate::font;
use kiln::{Error, Result};
use std::path::{Path, PathBuf};

const PANEL_W: f64 = 320.0;
const PANEL_H: f64 = 240.0;
const MARGIN: (f64, f64, f64, f64) = (52.0, 16.0, 34.0, 40.0); // left, right, top, bottom
const TRAIN: [u8; 3] = [31, 119, 180];
const VAL: [u8; 3] = [255, 127, 14];

/// One panel: a title and up to two series (training, validation) of (epoch, value).
pub struct Panel {
    pub title: String,
    pub train: Vec<(f64, f64)>,
    pub val: Vec<(f64, f64)>,
}

/// The epochs logged in `run_dir/log.jsonl`, as panels.
pub fn panels(run_dir: &Path) -> Result<Vec<Panel>> {
    let path = run_dir.join("log.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, &e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| Error::format(&path, format!("line {}: not JSON ({e})", i + 1)))?;
        rows.push(v);
    }
    if rows.is_empty() {
        return Err(Error::format(&path, "no epochs logged yet"));
    }
    let mut names: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            let base = k.strip_prefix("val_").unwrap_or(k).to_string();
            if !["epoch", "seconds"].contains(&base.as_str()) && !names.contains(&base) {
                names.push(base);
            }
        }
    }
    // Loss first and the learning rate last, as Keras lists them.
    names.sort_by_key(|n| match n.as_str() {
        "loss" => 0,
        "learning_rate" => 2,
        _ => 1,
    });
    let series = |name: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r.get("epoch")?.as_f64()?, r.get(name)?.as_f64()?)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    Ok(names.into_iter().map(|n| Panel { train: series(&n), val: series(&format!("val_{n}")), title: n }).collect())
}

pub fn plot(run_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let panels = panels(run_dir)?;
    let (svg, png) = (run_dir.join("curves.svg"), run_dir.join("curves.png"));
    kiln::io::write_atomic(&svg, svg_chart(&panels).as_bytes())?;
    kiln::io::write_atomic(&png, &png_chart(&panels, &png)?)?;
    Ok((svg, png))
}

/// Axis range and ticks: about five round steps covering the values.
fn ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let (lo, hi) =
        if hi - lo < 1e-12 { (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3)) } else { (lo, hi) };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let (a, b) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let n = ((b - a) / step).round() as usize;
    (a, b, (0..=n).map(|i| a + i as f64 * step).collect())
}

fn label(v: f64) -> String {
    let trim = |s: String| s.trim_end_matches('0').trim_end_matches('.').to_string();
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() < 1e-3 || v.abs() >= 1e5 {
        let s = format!("{v:.2e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        return format!("{}e{exp}", trim(mantissa.to_string()));
    }
    trim(format!("{v:.6}"))
}

/// Geometry shared by both renderings: panel i's plot area and the value-to-pixel maps.
struct Frame {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    xr: (f64, f64),
    yr: (f64, f64),
    xticks: Vec<f64>,
    yticks: Vec<f64>,
}

impl Frame {
    fn new(i: usize, p: &Panel) -> Frame {
        let all = p.train.iter().chain(&p.val);
        let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in all {
            (xlo, xhi, ylo, yhi) = (xlo.min(x), xhi.max(x), ylo.min(y), yhi.max(y));
        }
        if xlo > xhi {
            (xlo, xhi, ylo, yhi) = (1.0, 2.0, 0.0, 1.0);
        }
        let (ya, yb, yticks) = ticks(ylo, yhi);
        let xhi = if xhi > xlo { xhi } else { xlo + 1.0 };
        let every = ((xhi - xlo) / 8.0).ceil().max(1.0);
        let xticks = (0..).map(|k| xlo + k as f64 * every).take_while(|x| *x <= xhi + 1e-9).collect();
        Frame {
            x0: i as f64 * PANEL_W + MARGIN.0,
            y0: MARGIN.2,
            w: PANEL_W - MARGIN.0 - MARGIN.1,
            h: PANEL_H - MARGIN.2 - MARGIN.3,
            xr: (xlo, xhi),
            yr: (ya, yb),
            xticks,
            yticks,
        }
    }
    fn px(&self, x: f64) -> f64 {
        self.x0 + (x - self.xr.0) / (self.xr.1 - self.xr.0) * self.w
    }
    fn py(&self, y: f64) -> f64 {
        self.y0 + self.h - (y - self.yr.0) / (self.yr.1 - self.yr.0) * self.h
    }
    /// Where legend row k goes: in the top right corner, or the bottom right one when the curves end high.
    fn legend(&self, p: &Panel, k: usize) -> (f64, f64) {
        let ends: Vec<f64> = [&p.train, &p.val].iter().filter_map(|s| s.last()).map(|&(_, y)| self.py(y)).collect();
        let high = ends.iter().any(|&y| y < self.y0 + 0.4 * self.h);
        let top = if high { self.y0 + self.h - 26.0 } else { self.y0 + 14.0 };
        (self.x0 + self.w - 84.0, top + 14.0 * k as f64)
    }
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

pub fn svg_chart(panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{PANEL_H}\" font-family=\"sans-serif\" \
         font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, p) in panels.iter().enumerate() {
        let f = Frame::new(i, p);
        s += &format!(
            "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
            f.x0 + f.w / 2.0,
            p.title
        );
        for &t in &f.yticks {
            let y = f.py(t);
            s += &format!(
                "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\n<text x=\"{}\" y=\"{:.1}\" \
                 text-anchor=\"end\">{}</text>\n",
                f.x0,
                f.x0 + f.w,
                f.x0 - 4.0,
                y + 4.0,
                label(t)
            );
        }
        for &t in &f.xticks {
            s += &format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                f.px(t),
                f.y0 + f.h + 14.0,
                label(t)
            );
        }
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>\n<rect x=\"{}\" y=\"{}\" width=\"{}\" \
             height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n",
            f.x0 + f.w / 2.0,
            f.y0 + f.h + 30.0,
            f.x0,
            f.y0,
            f.w,
            f.h
        );
        for (series, color, name, k) in [(&p.train, TRAIN, "training", 0), (&p.val, VAL, "validation", 1)] {
            if series.is_empty() {
                continue;
            }
            let pts: Vec<String> = series.iter().map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y))).collect();
            s += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                pts.join(" "),
                hex(color)
            );
            let (lx, ly) = f.legend(p, k);
            s += &format!(
                "<line x1=\"{lx}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/><text x=\"{}\" \
                 y=\"{ly}\">{name}</text>\n",
                ly - 4.0,
                lx + 14.0,
                ly - 4.0,
                hex(color),
                lx + 18.0
            );
        }
    }
    s + "</svg>\n"
}

/// An RGB picture.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas { w, h, px: vec![255; w * h * 3] }
    }
    fn dot(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    /// A line `thick` pixels wide.
    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], thick: i64) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for k in 0..=n {
            let t = k as f64 / n as f64;
            let (x, y) = ((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64);
            for dy in 0..thick {
                for dx in 0..thick {
                    self.dot(x + dx - thick / 2, y + dy - thick / 2, c);
                }
            }
        }
    }
    /// Text with its baseline-left corner at (x, y); `align` 0 left, 1 centre, 2 right.
    fn text(&mut self, s: &str, x: f64, y: f64, scale: usize, align: usize, c: [u8; 3]) {
        let width = (s.chars().count() * (font::W + 1) * scale) as f64;
        let x = x - width * align as f64 / 2.0;
        for (i, ch) in s.chars().enumerate() {
            let g = font::glyph(ch);
            for (r, bits) in g.iter().enumerate() {
                for col in 0..font::W {
                    if bits >> (font::W - 1 - col) & 1 == 1 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                let px = x as i64 + ((i * (font::W + 1) + col) * scale + sx) as i64;
                                let py = y as i64 - ((font::H - r) * scale) as i64 + sy as i64;
                                self.dot(px, py, c);
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn png_chart(panels: &[Panel], path: &Path) -> Result<Vec<u8>> {
    let mut cv = Canvas::new((PANEL_W * panels.len() as f64) as usize, PANEL_H as usize);
    let (grid, ink) = ([224, 224, 224], [40, 40, 40]);
    for (i, p) in panels.iter().enumerate() {
        let f = Frame::new(i, p);
        cv.text(&p.title, f.x0 + f.w / 2.0, 22.0, 2, 1, ink);
        for &t in &f.yticks {
            let y = f.py(t);
            cv.line((f.x0, y), (f.x0 + f.w, y), grid, 1);
            cv.text(&label(t), f.x0 - 5.0, y + 4.0, 1, 2, ink);
        }
        for &t in &f.xticks {
            cv.text(&label(t), f.px(t), f.y0 + f.h + 14.0, 1, 1, ink);
        }
        cv.text("epoch", f.x0 + f.w / 2.0, f.y0 + f.h + 30.0, 1, 1, ink);
        let (l, r, t, b) = (f.x0, f.x0 + f.w, f.y0, f.y0 + f.h);
        for (a, z) in [((l, t), (r, t)), ((r, t), (r, b)), ((r, b), (l, b)), ((l, b), (l, t))] {
            cv.line(a, z, [68, 68, 68], 1);
        }
        for (series, color, name, k) in [(&p.train, TRAIN, "training", 0), (&p.val, VAL, "validation", 1)] {
            for w in series.windows(2) {
                cv.line((f.px(w[0].0), f.py(w[0].1)), (f.px(w[1].0), f.py(w[1].1)), color, 2);
            }
            if let [only] = series.as_slice() {
                cv.line((f.px(only.0) - 2.0, f.py(only.1)), (f.px(only.0) + 2.0, f.py(only.1)), color, 3);
            }
            if !series.is_empty() {
                let (lx, ly) = f.legend(p, k);
                cv.line((lx, ly - 4.0), (lx + 14.0, ly - 4.0), color, 2);
                cv.text(name, lx + 18.0, ly, 1, 0, ink);
            }
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, cv.w as u32, cv.h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| Error::format(path, format!("cannot encode PNG: {e}"));
    let mut w = enc.write_header().map_err(err)?;
    w.write_image_data(&cv.px).map_err(err)?;
    w.finish().map_err(err)?;
    Ok(out)
}
