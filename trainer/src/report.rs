//! The evaluation report as a self-contained HTML page: rates, the genuine vs
//! impostor score histograms with the thresholds drawn in, the confusion
//! matrix and every photo's verdict.

use std::fmt::Write;

use crate::evaluate::Evaluation;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else {
        format!("{:.1} %", x * 100.0)
    }
}

/// An SVG histogram of genuine (green) and impostor (red) values in `[lo, hi]`
/// with a vertical line at `threshold`.
fn histogram(
    title: &str,
    genuine: &[f32],
    impostor: &[f32],
    lo: f32,
    hi: f32,
    threshold: f32,
) -> String {
    const BINS: usize = 40;
    const W: f32 = 640.0;
    const H: f32 = 200.0;
    let bin = |v: f32| (((v - lo) / (hi - lo) * BINS as f32) as usize).min(BINS - 1);
    let mut g = [0usize; BINS];
    let mut i = [0usize; BINS];
    genuine.iter().for_each(|&v| g[bin(v)] += 1);
    impostor.iter().for_each(|&v| i[bin(v)] += 1);
    // Each group is scaled to its own peak: a few genuine photos would
    // otherwise vanish next to thousands of strangers.
    let g_peak = g.iter().copied().max().unwrap_or(1).max(1) as f32;
    let i_peak = i.iter().copied().max().unwrap_or(1).max(1) as f32;
    let bw = W / BINS as f32;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\" role=\"img\">",
        escape(title),
        H + 20.0,
        H + 20.0
    );
    for (k, (&gc, &ic)) in g.iter().zip(&i).enumerate() {
        let x = k as f32 * bw;
        for (count, peak, colour, offset) in [
            (gc, g_peak, "#2a9d4a", 0.0),
            (ic, i_peak, "#d1495b", bw / 2.0),
        ] {
            let h = count as f32 / peak * H;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\" opacity=\"0.85\"/>",
                x + offset,
                H - h,
                bw / 2.0
            );
        }
    }
    let tx = (threshold - lo) / (hi - lo) * W;
    let _ = write!(
        svg,
        "<line x1=\"{tx:.1}\" y1=\"0\" x2=\"{tx:.1}\" y2=\"{H}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{:.1}\" y=\"12\" font-size=\"11\">threshold {threshold:.2}</text>\
         <text x=\"0\" y=\"{}\" font-size=\"11\">{lo}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{hi}</text></svg>\
         <p class=\"legend\"><span style=\"color:#2a9d4a\">■</span> enrolled people ({}) \
         <span style=\"color:#d1495b\">■</span> not enrolled ({}); each colour scaled to its own peak</p></figure>",
        tx + 4.0,
        H + 15.0,
        W,
        H + 15.0,
        genuine.len(),
        impostor.len()
    );
    svg
}

/// Renders the report.
/// A link to a photo on this machine, named as the output names it.
fn link(path: &std::path::Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let url: String = absolute
        .to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!(
        "<a href=\"file://{url}\">{}</a>",
        escape(&crate::dataset::shown(path))
    )
}

pub fn html(eval: &Evaluation, title: &str) -> String {
    let genuine: Vec<_> = eval.photos.iter().filter(|p| p.enrolled).collect();
    let impostor: Vec<_> = eval.photos.iter().filter(|p| !p.enrolled).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}\
         .bad{{background:#fde2e4}}.legend{{font-size:13px}}figcaption{{font-weight:bold}}\
         </style></head><body><h1>{t}</h1>",
        t = escape(title)
    );
    let _ = write!(
        out,
        "<table><tr><th>enrolled people</th><td>{}</td></tr>\
         <tr><th>photos of enrolled people</th><td>{}</td></tr>\
         <tr><th>photos of people not enrolled</th><td>{}</td></tr>\
         <tr><th>closed-set accuracy (nearest person right)</th><td>{}</td></tr>\
         <tr><th>true accept rate (right person, gate passed)</th><td>{}</td></tr>\
         <tr><th>false accept rate (stranger let in)</th><td>{}</td></tr>\
         <tr><th>enrolled people taken for a colleague</th><td>{}</td></tr>\
         <tr><th>thresholds</th><td>probability ≥ {:.2}, similarity ≥ {:.2}</td></tr>\
         <tr><th>photos skipped</th><td>{}</td></tr></table>",
        escape(&eval.classifier_labels.join(", ")),
        eval.enrolled_photos,
        eval.impostor_photos,
        percent(eval.closed_set_accuracy),
        percent(eval.true_accept_rate),
        percent(eval.false_accept_rate),
        eval.misidentified,
        eval.thresholds.min_probability,
        eval.thresholds.min_similarity,
        eval.skipped.len()
    );
    let sims =
        |v: &[&crate::evaluate::PhotoResult]| v.iter().map(|p| p.similarity).collect::<Vec<_>>();
    let probs =
        |v: &[&crate::evaluate::PhotoResult]| v.iter().map(|p| p.probability).collect::<Vec<_>>();
    out.push_str(&histogram(
        "Cosine similarity to the nearest enrolled person's centroid",
        &sims(&genuine),
        &sims(&impostor),
        -0.2,
        1.0,
        eval.thresholds.min_similarity,
    ));
    out.push_str(&histogram(
        "Softmax probability of the nearest enrolled person",
        &probs(&genuine),
        &probs(&impostor),
        0.0,
        1.0,
        eval.thresholds.min_probability,
    ));
    let mut columns: Vec<String> = eval.classifier_labels.clone();
    columns.push("unknown".into());
    out.push_str("<h2>Confusion matrix</h2><table><tr><th>shows \\ answer</th>");
    for c in &columns {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out.push_str("</tr>");
    for (row, counts) in &eval.confusion {
        let _ = write!(out, "<tr><th>{}</th>", escape(row));
        for c in &columns {
            let n = counts.get(c).copied().unwrap_or(0);
            let wrong = n > 0 && c != row && !(row == "(not enrolled)" && c == "unknown");
            let _ = write!(
                out,
                "<td{}>{}</td>",
                if wrong { " class=\"bad\"" } else { "" },
                n
            );
        }
        out.push_str("</tr>");
    }
    let linked = eval.photos.iter().any(|p| !p.causes.is_empty());
    out.push_str("</table><h2>Photos</h2><table><tr><th>photo</th><th>shows</th><th>answer</th><th>nearest</th><th>probability</th><th>similarity</th><th>faces</th>");
    if linked {
        out.push_str("<th>nearest enrolment photos, and what to fix</th>");
    }
    out.push_str("</tr>");
    for p in &eval.photos {
        let wrong = p.false_accept() || p.false_reject();
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td>",
            if wrong { " class=\"bad\"" } else { "" },
            link(&p.path),
            escape(&p.person),
            escape(&p.predicted),
            escape(&p.nearest),
            p.probability,
            p.similarity,
            p.faces
        );
        if linked {
            out.push_str("<td>");
            for c in &p.causes {
                let _ = write!(
                    out,
                    "{} ({}, {:.2})<br>",
                    link(&c.path),
                    escape(&c.person),
                    c.similarity
                );
            }
            let _ = write!(out, "{}</td>", escape(&p.diagnosis()));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    if !eval.skipped.is_empty() {
        out.push_str("<h2>Skipped files</h2><table><tr><th>file</th><th>reason</th></tr>");
        for s in &eval.skipped {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&crate::dataset::shown(&s.path)),
                escape(&s.reason)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}
