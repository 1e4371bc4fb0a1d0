"""scikit-learn baselines for the two review tasks, from the review text: TF-IDF of word 1-2 grams, then logistic
regression or a linear SVM; stratified 80/20 splits over five seeds (kiln's split is its own, so the comparison
is over several splits, not one). (a) sentiment: Rating 4-5 positive, 1-2 negative, 3 dropped. (b) Recommended
IND, without and with class_weight="balanced", reporting the class-0 (not recommended) F1 too.

    .bench-venv/bin/python examples/reviews/baselines.py [PATH_TO_womens_clothing_reviews.csv.gz]
"""
import sys

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC

path = sys.argv[1] if len(sys.argv) > 1 else "data/womens-ecommerce-reviews/womens_clothing_reviews.csv.gz"
full = pd.read_csv(path)


def run(title, text, y, weights):
    print(title)
    for name, make in [("logistic regression", lambda w: LogisticRegression(max_iter=2000, class_weight=w)),
                       ("linear SVM", lambda w: LinearSVC(class_weight=w))]:
        for w in weights:
            acc, f1, f1_0 = [], [], []
            for seed in range(5):
                xtr, xte, ytr, yte = train_test_split(text, y, test_size=0.2, stratify=y, random_state=seed)
                vec = TfidfVectorizer(ngram_range=(1, 2))
                p = make(w).fit(vec.fit_transform(xtr), ytr).predict(vec.transform(xte))
                acc.append(accuracy_score(yte, p))
                f1.append(f1_score(yte, p, average="macro"))
                f1_0.append(f1_score(yte, p, pos_label=0))
            print(f"  TF-IDF 1-2 grams + {name}{' (class_weight=balanced)' if w else ''}: accuracy {np.mean(acc):.4f}, "
                  f"macro-F1 {np.mean(f1):.4f} (range {min(f1):.4f}-{max(f1):.4f}), class-0 F1 {np.mean(f1_0):.4f}")


df = full[full["Rating"] != 3]
run(f"(a) sentiment: {len(df)} reviews, {(df['Rating'] >= 4).mean():.1%} positive",
    df["Review Text"].fillna(""), (df["Rating"] >= 4).astype(int), [None])
run(f"(b) recommended: {len(full)} reviews, {full['Recommended IND'].mean():.1%} recommended",
    full["Review Text"].fillna(""), full["Recommended IND"], [None, "balanced"])
