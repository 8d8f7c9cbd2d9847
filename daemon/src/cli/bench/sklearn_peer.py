#!/usr/bin/env python3
"""The sklearn peer `coach bench intent --peer sklearn` runs beside Coach.

The model of the reference peer for CLINC150 (word 1-2-gram + char_wb
2-5-gram TF-IDF, LinearSVC C=1, out-of-scope as its own class), reading the
same examples Coach trained and evaluated on, as JSON lines
{"text", "intent"}. Prints one JSON line with its scores and timings.
"""
import json, sys, time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

train_path, eval_path, oos = sys.argv[1], sys.argv[2], sys.argv[3]
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
inn = [(a, b) for a, b in zip(truth, pred) if a != oos]
out = [(a, b) for a, b in zip(truth, pred) if a == oos]
print(json.dumps({
    "in_scope_accuracy": sum(a == b for a, b in inn) / len(inn) if inn else None,
    "oos_recall": sum(b == oos for _, b in out) / len(out) if out else None,
    "accuracy": sum(a == b for a, b in zip(truth, pred)) / len(truth),
    "macro_f1": f1_score(truth, pred, average="macro", labels=sorted(set(truth))),
    "fit_seconds": fit,
    "predict_per_second": len(texts) / predict_s if predict_s > 0 else None,
}))
