#!/usr/bin/env python3
"""Fine-tune a Hugging Face sequence classifier on intent data, for Coach.

Coach runs this as a `kind = "process"` step: CUDA_VISIBLE_DEVICES holds the
GPUs the scheduler allocated, COACH_CHECKPOINT_DIR is a folder that survives
a requeue (resume from it), and every line this script prints to stdout that
starts with `{` is a progress-protocol message (docs/gpus.md):

    {"progress": 0.4, "message": "epoch 2/5"}
    {"metric": "eval_accuracy", "value": 0.91, "step": 2}
    {"artifact": "path/to/model"}

Other lines are logged as they are. `--dry-run` walks through the same
messages without transformers, torch or a GPU, so the wiring can be tried
anywhere.

Input: JSON lines `{"text": ..., "intent": ...}` (train and validation files).
"""

import argparse
import json
import os
import sys
import time


def say(**message):
    print(json.dumps(message), flush=True)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dry_run(args, out_dir):
    print(f"dry run: CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
    for epoch in range(1, args.epochs + 1):
        time.sleep(0.05)
        say(progress=epoch / args.epochs, message=f"epoch {epoch}/{args.epochs}")
        say(metric="train_loss", value=round(1.0 / epoch, 4), step=epoch)
        say(metric="eval_accuracy", value=round(0.5 + 0.4 * epoch / args.epochs, 4), step=epoch)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"dry_run": True, "base_model": args.model, "epochs": args.epochs}, f)
    say(artifact=out_dir)


def train(args, out_dir):
    # Imported here so --dry-run needs none of them.
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              Trainer, TrainerCallback, TrainingArguments)
    from transformers.trainer_utils import get_last_checkpoint

    train_rows = read_jsonl(args.train)
    val_rows = read_jsonl(args.validation)
    labels = sorted({r["intent"] for r in train_rows})
    label_id = {l: i for i, l in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(rows):
        ds = Dataset.from_list([{"text": r["text"], "label": label_id[r["intent"]]}
                                for r in rows if r["intent"] in label_id])
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True)

    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id=label_id)

    class Protocol(TrainerCallback):
        def on_log(self, targs, state, control, logs=None, **kw):
            for k, v in (logs or {}).items():
                if isinstance(v, (int, float)):
                    say(metric=k, value=float(v), step=int(state.global_step))

        def on_step_end(self, targs, state, control, **kw):
            if state.max_steps and state.global_step % 20 == 0:
                say(progress=state.global_step / state.max_steps,
                    message=f"step {state.global_step}/{state.max_steps}")

    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, axis=-1) == p.label_ids).mean())}

    checkpoints = os.environ.get("COACH_CHECKPOINT_DIR", os.path.join(out_dir, "checkpoints"))
    targs = TrainingArguments(
        output_dir=checkpoints, num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
        logging_steps=20, report_to=[], disable_tqdm=True,
        fp16=torch.cuda.is_available())
    trainer = Trainer(model=model, args=targs, train_dataset=encode(train_rows),
                      eval_dataset=encode(val_rows), processing_class=tokenizer,
                      compute_metrics=accuracy, callbacks=[Protocol()])
    # A preempted and requeued step resumes where it stopped.
    trainer.train(resume_from_checkpoint=get_last_checkpoint(checkpoints))
    trainer.save_model(out_dir)
    say(progress=1.0, message="saved")
    say(artifact=out_dir)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="distilbert-base-uncased")
    p.add_argument("--train", help="JSON lines with text and intent")
    p.add_argument("--validation", help="JSON lines with text and intent")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=None, help="default: $COACH_CHECKPOINT_DIR/model")
    p.add_argument("--dry-run", action="store_true", help="no GPU, no downloads: only the protocol")
    args = p.parse_args()
    out_dir = args.out or os.path.join(os.environ.get("COACH_CHECKPOINT_DIR", "."), "model")
    if args.dry_run:
        dry_run(args, out_dir)
        return 0
    if not (args.train and args.validation):
        p.error("--train and --validation are needed (or --dry-run)")
    train(args, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
