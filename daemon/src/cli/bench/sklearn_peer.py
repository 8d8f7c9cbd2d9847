#!/usr/bin/env python3
"""The sklearn peer `coach bench intent --peer sklearn` runs beside Coach.

The model of the reference peer for CLINC150 (word 1-2-gram + char_wb
2-5-gram TF-IDF, LinearSVC C=1, out-of-scope as its own class), reading the
same examples Coach trained and evaluated on, as JSON lines
{"text", "intent"}. Prints one JSON line with its scores and timings.

With a fourth argument K, also its out-of-fold scores over the training
examples (stratified K-fold, the same K as Coach's cross-validation), so
that Coach's cross-validated figures have the peer's beside them.
"""
import json, sys, time, warnings

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

train_path, eval_path, oos = sys.argv[1], sys.argv[2], sys.argv[3]
folds = int(sys.argv[4]) if len(sys.argv) > 4 else 0
load = lambda p: [json.loads(line) for line in open(p, encoding="utf-8")]
train, held = load(train_path), load(eval_path)
X, y = [r["text"] for r in train], [r["intent"] for r in train]
model = make_pipeline(
    make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    ),
    LinearSVC(C=1.0),
)
t = time.perf_counter()
model.fit(X, y)
fit = time.perf_counter() - t
texts, truth = [r["text"] for r in held], [r["intent"] for r in held]
t = time.perf_counter()
pred = list(model.predict(texts))
predict_s = time.perf_counter() - t


def scores(truth, pred):
    inn = [(a, b) for a, b in zip(truth, pred) if a != oos]
    out = [(a, b) for a, b in zip(truth, pred) if a == oos]
    return (
        sum(a == b for a, b in inn) / len(inn) if inn else None,
        sum(b == oos for _, b in out) / len(out) if out else None,
    )


cv = {}
if folds >= 2:
    # Intents with fewer examples than folds only warn: they are scored
    # like the rest where they land. Data too small for the folds at all
    # leaves the peer without cross-validated figures, and says why.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            oof = cross_val_predict(
                model, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0)
            )
        cv_in, cv_oos = scores(y, list(oof))
        cv = {
            "cv_in_scope_accuracy": cv_in,
            "cv_oos_recall": cv_oos,
            "cv_folds": folds,
            "cv_examples": len(y),
        }
    except ValueError as e:
        cv = {"cv_skipped": str(e)}
in_scope, recall = scores(truth, pred)
print(json.dumps({
    "in_scope_accuracy": in_scope,
    "oos_recall": recall,
    "accuracy": sum(a == b for a, b in zip(truth, pred)) / len(truth),
    "macro_f1": f1_score(truth, pred, average="macro", labels=sorted(set(truth))),
    "fit_seconds": fit,
    "predict_per_second": len(texts) / predict_s if predict_s > 0 else None,
    **cv,
}))
