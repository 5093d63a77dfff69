//! Indexing and searching committed fixture photos with the tiny random-weight fixture model: results equal a
//! brute-force ranking of the model's own embeddings, incremental runs equal a fresh index, removed files are
//! never returned, bad files are listed and skipped, and another model is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clip_search::{
    find_duplicates, index, AnnOptions, Filter, IndexOptions, IndexSummary, Query, SearchError,
    SearchOptions, Searcher, Store,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    root().join("fixtures/models/hf_tiny_quickgelu")
}

fn load_model() -> clip::Clip {
    clip::Clip::from_dir(&model_dir(), None).unwrap()
}

/// Fixture photos used as the library, with distinct content.
const PHOTOS: &[&str] = &[
    "jpeg_q95_444.jpg",
    "jpeg_progressive.jpg",
    "jpeg_grey.jpg",
    "jpeg_cmyk.jpg",
    "noise_rgb.png",
    "noise_q90.jpg",
    "png_rgba_logo.png",
    "odd_149x113.png",
    "sk_rocket.jpg",
    "tall_jpeg_180x420.jpg",
    "webp_lossy.webp",
    "gif_p.gif",
    "bmp_rgb24.bmp",
    "tiff_rgb_lzw.tif",
];

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("clip-search-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("photos/sub")).unwrap();
        Scratch(dir.canonicalize().unwrap())
    }

    fn photos(&self) -> PathBuf {
        self.0.join("photos")
    }

    fn db(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn add_fixtures(&self) {
        for (i, name) in PHOTOS.iter().enumerate() {
            let to = if i % 3 == 0 {
                self.photos().join("sub").join(name)
            } else {
                self.photos().join(name)
            };
            std::fs::copy(root().join("fixtures/images/inputs").join(name), to).unwrap();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(threshold: usize) -> IndexOptions {
    IndexOptions {
        model_spec: model_dir().display().to_string(),
        ann: AnnOptions {
            threshold,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run(clip: &clip::Clip, db: &Path, dir: &Path, threshold: usize) -> IndexSummary {
    index(clip, db, &[dir.to_path_buf()], &options(threshold), |_| {}).unwrap()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Path -> L2-normalised embedding, computed directly with the model (no index involved).
fn brute_force_embeddings(clip: &clip::Clip, dir: &Path) -> BTreeMap<PathBuf, Vec<f32>> {
    let mut paths = Vec::new();
    for entry in walkdir(dir) {
        paths.push(entry);
    }
    let rows = clip.encode_image_files(&paths, |_| {});
    paths
        .into_iter()
        .zip(rows)
        .filter_map(|(p, r)| r.ok().map(|r| (p, unit(r))))
        .collect()
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// What an index holds, keyed by path (ids differ between runs): hash and embedding.
fn contents(db: &Path) -> BTreeMap<PathBuf, (Vec<u8>, Vec<f32>)> {
    let searcher = Searcher::open(db).unwrap();
    let ids = searcher.store().ids_matching(&Filter::default()).unwrap();
    searcher
        .store()
        .records(&ids)
        .unwrap()
        .into_iter()
        .map(|(_, r)| (r.path, (r.hash.to_vec(), r.embedding)))
        .collect()
}

fn assert_brute_force_ranking(
    searcher: &Searcher,
    clip: &clip::Clip,
    expected: &BTreeMap<PathBuf, Vec<f32>>,
    exact: bool,
) {
    for text in ["a photo of a rocket", "noise", "a grey square"] {
        let query = Query::parse(&[text], &[]).unwrap();
        let vector = searcher.query_vector(clip, &query).unwrap();
        let direct = unit(clip.encode_texts(&[text], false).unwrap().remove(0));
        let mut want: Vec<(PathBuf, f32)> = expected
            .iter()
            .map(|(p, e)| (p.clone(), e.iter().zip(&direct).map(|(a, b)| a * b).sum()))
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let options = SearchOptions {
            top_k: want.len(),
            exact,
            ..Default::default()
        };
        let hits = searcher.search(&vector, &options).unwrap();
        assert_eq!(hits.len(), want.len(), "{text}");
        for (hit, (path, score)) in hits.iter().zip(&want) {
            assert_eq!(&hit.record.path, path, "{text}: order differs");
            assert!(
                (hit.score - score).abs() <= 1e-5,
                "{text}: {} vs {score}",
                hit.score
            );
        }
    }
}

#[test]
fn search_results_equal_a_brute_force_ranking_exact_and_approximate() {
    let scratch = Scratch::new("rank");
    scratch.add_fixtures();
    let clip = load_model();
    let expected = brute_force_embeddings(&clip, &scratch.photos());
    assert_eq!(expected.len(), PHOTOS.len());

    let exact_db = scratch.db("exact.db");
    let summary = run(&clip, &exact_db, &scratch.photos(), 1_000);
    assert_eq!(
        (summary.added, summary.failed.len(), summary.ann),
        (PHOTOS.len(), 0, false)
    );
    let searcher = Searcher::open(&exact_db).unwrap();
    searcher
        .check_model(&clip, "another path, same weights", clip::Precision::F32)
        .unwrap();
    assert_brute_force_ranking(&searcher, &clip, &expected, true);
    // The stored embeddings are the model's (normalised in f64 there, in f32 here: within an ulp or two).
    for (path, (_, embedding)) in contents(&exact_db) {
        let want = &expected[&path];
        let worst = embedding
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{}: {worst}", path.display());
    }

    // A threshold of 1 puts the HNSW graph in use; on a library this small it must find the exact ranking.
    let ann_db = scratch.db("ann.db");
    let summary = run(&clip, &ann_db, &scratch.photos(), 1);
    assert!(summary.ann);
    let searcher = Searcher::open_with(&ann_db, 1).unwrap();
    assert!(searcher.graph().is_some());
    assert_eq!(
        searcher.method(&SearchOptions::default()),
        clip_search::Method::Approximate
    );
    assert_brute_force_ranking(&searcher, &clip, &expected, false);
}

#[test]
fn incremental_runs_count_changes_and_end_equal_to_a_fresh_index() {
    let scratch = Scratch::new("incremental");
    scratch.add_fixtures();
    let clip = load_model();
    let db = scratch.db("photos.db");
    let first = run(&clip, &db, &scratch.photos(), 1);
    assert_eq!(first.added, PHOTOS.len());

    // Nothing changed: nothing is read.
    let again = run(&clip, &db, &scratch.photos(), 1);
    assert_eq!(
        (again.added, again.updated, again.removed, again.unchanged),
        (0, 0, 0, PHOTOS.len())
    );

    let photos = scratch.photos();
    // Add one, change one (other content, same name), rename one, copy one, delete one.
    std::fs::copy(
        root().join("fixtures/images/inputs/png_rgb.png"),
        photos.join("new.png"),
    )
    .unwrap();
    std::fs::copy(
        root().join("fixtures/images/inputs/webp_lossless.webp"),
        photos.join("noise_rgb.png"),
    )
    .unwrap();
    std::fs::rename(
        photos.join("sk_rocket.jpg"),
        photos.join("sub/rocket-renamed.jpg"),
    )
    .unwrap();
    std::fs::copy(
        photos.join("odd_149x113.png"),
        photos.join("sub/odd-copy.png"),
    )
    .unwrap();
    std::fs::remove_file(photos.join("gif_p.gif")).unwrap();
    let changed = run(&clip, &db, &photos, 1);
    assert_eq!(changed.added, 3, "{changed:?}"); // new.png, the renamed file, the copy
    assert_eq!(changed.updated, 1, "{changed:?}");
    assert_eq!(changed.removed, 2, "{changed:?}"); // the old name of the renamed file, the deleted one
    assert_eq!(changed.reused, 2, "{changed:?}"); // the renamed file and the copy were not embedded again
    assert_eq!(changed.unchanged, PHOTOS.len() - 3);
    assert!(changed.failed.is_empty());

    let fresh = scratch.db("fresh.db");
    run(&clip, &fresh, &photos, 1);
    assert_eq!(contents(&db), contents(&fresh));

    // Neither search method ever returns a removed file, and both rank the same.
    for method_exact in [true, false] {
        let searcher = Searcher::open_with(&db, 1).unwrap();
        let query = Query::parse(&["anything"], &[]).unwrap();
        let vector = searcher.query_vector(&clip, &query).unwrap();
        let hits = searcher
            .search(
                &vector,
                &SearchOptions {
                    top_k: 100,
                    exact: method_exact,
                    ..Default::default()
                },
            )
            .unwrap();
        let paths: Vec<&Path> = hits.iter().map(|h| h.record.path.as_path()).collect();
        assert_eq!(paths.len(), PHOTOS.len() + 1);
        assert!(!paths.contains(&photos.join("gif_p.gif").as_path()));
        assert!(!paths.contains(&photos.join("sk_rocket.jpg").as_path()));
    }
    let store = Store::open_read_only(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn corrupt_truncated_and_empty_images_are_listed_and_the_rest_indexed() {
    let scratch = Scratch::new("failures");
    scratch.add_fixtures();
    let photos = scratch.photos();
    let jpeg = std::fs::read(root().join("fixtures/images/inputs/jpeg_q50_420.jpg")).unwrap();
    std::fs::write(photos.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(photos.join("empty.jpg"), b"").unwrap();
    std::fs::write(
        photos.join("corrupt.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png",
    )
    .unwrap();
    // Skipped without a word: hidden files, AppleDouble files and other extensions.
    std::fs::write(photos.join("._noise_rgb.png"), b"resource fork").unwrap();
    std::fs::write(photos.join(".hidden.jpg"), &jpeg).unwrap();
    std::fs::write(photos.join("notes.txt"), b"not a photo").unwrap();
    let clip = load_model();
    let db = scratch.db("photos.db");
    let summary = run(&clip, &db, &photos, 1_000);
    assert_eq!(summary.added, PHOTOS.len());
    let mut failed: Vec<&str> = summary
        .failed
        .iter()
        .map(|f| f.path.rsplit('/').next().unwrap())
        .collect();
    failed.sort();
    assert_eq!(failed, ["corrupt.png", "empty.jpg", "truncated.jpg"]);
    for failure in &summary.failed {
        assert!(
            !failure.error.is_empty() && !failure.error.contains('\n'),
            "{failure:?}"
        );
    }
    // A file that once indexed and now fails is removed, not left with its old embedding.
    std::fs::write(photos.join("noise_rgb.png"), b"garbage").unwrap();
    let rerun = run(&clip, &db, &photos, 1_000);
    assert_eq!((rerun.removed, rerun.failed.len()), (1, 4));
    assert!(!contents(&db).contains_key(&photos.join("noise_rgb.png")));
}

#[test]
fn another_model_is_refused_and_a_missing_folder_is_an_error_not_an_empty_folder() {
    let scratch = Scratch::new("refusals");
    scratch.add_fixtures();
    let clip = load_model();
    let db = scratch.db("photos.db");
    run(&clip, &db, &scratch.photos(), 1_000);
    let other = clip::Clip::from_dir(&root().join("fixtures/models/hf_odd_gelu"), None).unwrap();
    let error = index(&other, &db, &[scratch.photos()], &options(1_000), |_| {}).unwrap_err();
    assert!(
        matches!(error, SearchError::ModelMismatch { .. }),
        "{error}"
    );
    let searcher = Searcher::open(&db).unwrap();
    let error = searcher
        .check_model(&other, "other", clip::Precision::F32)
        .unwrap_err();
    assert!(error.to_string().contains("was built with"), "{error}");
    // The same weights in another dtype are another model too.
    let error = searcher
        .check_model(&clip, "same", clip::Precision::Int8)
        .unwrap_err();
    assert!(
        matches!(error, SearchError::ModelMismatch { .. }),
        "{error}"
    );

    let before = contents(&db);
    let error = index(
        &clip,
        &db,
        &[scratch.0.join("unmounted")],
        &options(1_000),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(error, SearchError::Read { .. }), "{error}");
    assert_eq!(contents(&db), before);

    let not_an_index = scratch.db("other.sqlite");
    std::fs::write(
        &not_an_index,
        b"plain text, not SQLite at all, long enough to have a header....",
    )
    .unwrap();
    let error = Searcher::open(&not_an_index).map(|_| ()).unwrap_err();
    assert!(matches!(error, SearchError::NotAnIndex { .. }), "{error}");
    let error = Searcher::open(&scratch.db("absent.db"))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(error, SearchError::NoIndex { .. }), "{error}");
}

#[test]
fn filters_select_before_ranking_and_image_queries_use_stored_embeddings() {
    let scratch = Scratch::new("filters");
    scratch.add_fixtures();
    let photos = scratch.photos();
    // Dates come from the modification time when a photo has no EXIF date.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_262_304_000); // 2010-01-01
    for name in ["noise_rgb.png", "jpeg_grey.jpg"] {
        std::fs::File::options()
            .write(true)
            .open(photos.join(name))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let clip = load_model();
    let db = scratch.db("photos.db");
    run(&clip, &db, &photos, 1_000);
    let searcher = Searcher::open(&db).unwrap();
    let query = Query::parse(&["x"], &[]).unwrap();
    let vector = searcher.query_vector(&clip, &query).unwrap();
    let search = |filter: Filter| -> Vec<PathBuf> {
        let options = SearchOptions {
            top_k: 100,
            filter,
            ..Default::default()
        };
        let mut paths: Vec<PathBuf> = searcher
            .search(&vector, &options)
            .unwrap()
            .into_iter()
            .map(|h| h.record.path)
            .collect();
        paths.sort();
        paths
    };
    let before_2011 = search(Filter {
        before: Some("2011-01-01".into()),
        ..Default::default()
    });
    assert_eq!(
        before_2011,
        vec![photos.join("jpeg_grey.jpg"), photos.join("noise_rgb.png")]
    );
    assert_eq!(
        search(Filter {
            after: Some("2011-01-01".into()),
            ..Default::default()
        })
        .len(),
        PHOTOS.len() - 2
    );
    let under = search(Filter {
        under: Some(photos.join("sub")),
        ..Default::default()
    });
    assert_eq!(under.len(), PHOTOS.len().div_ceil(3));
    assert!(under.iter().all(|p| p.starts_with(photos.join("sub"))));

    // An indexed image as the query finds itself first with score 1; a minimum score cuts the rest.
    let image = photos.join("odd_149x113.png");
    let query = Query::parse::<&str>(&[], std::slice::from_ref(&image)).unwrap();
    let vector = searcher.query_vector(&clip, &query).unwrap();
    let options = SearchOptions {
        top_k: 5,
        min_score: Some(0.999_99),
        ..Default::default()
    };
    let hits = searcher.search(&vector, &options).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].record.path, image);
    assert!((hits[0].score - 1.0).abs() < 1e-6);

    // Two copies of one photo form the only duplicate group.
    drop(searcher);
    std::fs::copy(
        photos.join("sk_rocket.jpg"),
        photos.join("sub/rocket-copy.jpg"),
    )
    .unwrap();
    run(&clip, &db, &photos, 1_000);
    let searcher = Searcher::open(&db).unwrap();
    let groups = find_duplicates(&searcher, 0.9999).unwrap();
    assert_eq!(groups.len(), 1);
    let paths: Vec<&Path> = groups[0]
        .images
        .iter()
        .map(|(_, r)| r.path.as_path())
        .collect();
    assert_eq!(
        paths,
        [
            photos.join("sk_rocket.jpg").as_path(),
            photos.join("sub/rocket-copy.jpg").as_path()
        ]
    );
}
