"""scikit-learn baselines for the two review tasks, from the review text: TF-IDF of word 1-2 grams, then logistic
regression or a linear SVM. (a) sentiment: Rating 4-5 positive, 1-2 negative, 3 dropped. (b) Recommended IND,
without and with class_weight="balanced", reporting the class-0 (not recommended) F1 too.

With --sentiment-split / --recommend-split (the split.csv that `kiln train` writes into its run folder; several
for a mean over them) each baseline is scored on exactly kiln's test rows; without, on stratified 80/20 splits
over five seeds of its own.

    .bench-venv/bin/python examples/reviews/baselines.py [--data womens_clothing_reviews.csv.gz]
        [--sentiment-split runs/.../split.csv ...] [--recommend-split runs/.../split.csv ...]
"""
import argparse

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC

ap = argparse.ArgumentParser()
ap.add_argument("--data", default="data/womens-ecommerce-reviews/womens_clothing_reviews.csv.gz")
ap.add_argument("--sentiment-split", nargs="+")
ap.add_argument("--recommend-split", nargs="+")
args = ap.parse_args()
full = pd.read_csv(args.data)


def splits(text, y, split_files):
    """(train text, test text, train y, test y) per split: kiln's rows, or five seeded stratified splits."""
    if split_files:
        out = []
        for f in split_files:
            part = pd.read_csv(f).set_index("row")["part"]
            assert part.index.isin(text.index).all(), f"{f} names rows the data does not have"
            # Baselines train on all of kiln's training rows (its fit and validation rows).
            tr, te = part.index[part.isin(["train", "validation"])], part.index[part == "test"]
            out.append((text[tr], text[te], y[tr], y[te]))
        return out
    return [train_test_split(text, y, test_size=0.2, stratify=y, random_state=s) for s in range(5)]


def run(title, text, y, weights, split_files):
    parts = splits(text, y, split_files)
    where = f"kiln's split ({', '.join(split_files)})" if split_files else "mean of 5 seeded splits"
    print(f"{title} - {where}")
    for name, make in [("logistic regression", lambda w: LogisticRegression(max_iter=2000, class_weight=w)),
                       ("linear SVM", lambda w: LinearSVC(class_weight=w))]:
        for w in weights:
            acc, f1, f1_0 = [], [], []
            for xtr, xte, ytr, yte in parts:
                vec = TfidfVectorizer(ngram_range=(1, 2))
                p = make(w).fit(vec.fit_transform(xtr), ytr).predict(vec.transform(xte))
                acc.append(accuracy_score(yte, p))
                f1.append(f1_score(yte, p, average="macro"))
                f1_0.append(f1_score(yte, p, pos_label=0))
            print(f"  TF-IDF 1-2 grams + {name}{' (class_weight=balanced)' if w else ''}: accuracy {np.mean(acc):.4f}, "
                  f"macro-F1 {np.mean(f1):.4f} (range {min(f1):.4f}-{max(f1):.4f}), class-0 F1 {np.mean(f1_0):.4f}")
            if len(parts) > 1:
                print("    per split: " + ", ".join(f"{a:.4f}/{f:.4f}" for a, f in zip(acc, f1)))


df = full[full["Rating"] != 3]
run(f"(a) sentiment: {len(df)} reviews, {(df['Rating'] >= 4).mean():.1%} positive",
    df["Review Text"].fillna(""), (df["Rating"] >= 4).astype(int), [None], args.sentiment_split)
run(f"(b) recommended: {len(full)} reviews, {full['Recommended IND'].mean():.1%} recommended",
    full["Review Text"].fillna(""), full["Recommended IND"], [None, "balanced"], args.recommend_split)
