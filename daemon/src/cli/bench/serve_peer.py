#!/usr/bin/env python3
"""The peer `coach bench serve` runs beside Coach: the scikit-learn intent
model of `coach bench intent --peer sklearn` (word 1-2-gram + char_wb
2-5-gram TF-IDF, LinearSVC), served the way a team usually serves it —
FastAPI on uvicorn, one worker process per core.

    serve_peer.py train TRAIN.jsonl MODEL.pickle
    serve_peer.py serve PORT WORKERS MODEL.pickle
"""
import json, os, pickle, sys

if __name__ == "__main__":
    if sys.argv[1] == "train":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline, make_union
        from sklearn.svm import LinearSVC

        rows = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
        model = make_pipeline(
            make_union(
                TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
            ),
            LinearSVC(C=1.0),
        )
        model.fit([r["text"] for r in rows], [r["intent"] for r in rows])
        with open(sys.argv[3], "wb") as f:
            pickle.dump(model, f)
    else:
        import uvicorn

        os.environ["COACH_PEER_MODEL"] = sys.argv[4]
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        uvicorn.run(
            "serve_peer:app",
            host="127.0.0.1",
            port=int(sys.argv[2]),
            workers=int(sys.argv[3]),
            log_level="warning",
        )
else:
    from fastapi import FastAPI
    from pydantic import BaseModel

    with open(os.environ["COACH_PEER_MODEL"], "rb") as f:
        model = pickle.load(f)
    classes = model.classes_
    app = FastAPI()

    class Predict(BaseModel):
        text: str

    @app.post("/predict")
    def predict(req: Predict):
        scores = model.decision_function([req.text])[0]
        top = scores.argsort()[::-1][:5]
        return {
            "intent": str(classes[top[0]]),
            "confidence": float(scores[top[0]]),
            "ranking": [{"intent": str(classes[i]), "confidence": float(scores[i])} for i in top],
        }
