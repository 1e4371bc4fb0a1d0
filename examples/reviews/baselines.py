"""scikit-learn baselines for review sentiment (Rating 4-5 positive, 1-2 negative, 3 dropped): TF-IDF of word
1-2 grams on the review text, then logistic regression or a linear SVM; stratified 80/20 splits, over five
seeds (kiln's split is its own, so the comparison is over several splits, not one).

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
df = pd.read_csv(path)
df = df[df["Rating"] != 3]
text = df["Review Text"].fillna("")
y = (df["Rating"] >= 4).astype(int)
print(f"{len(df)} reviews, {y.mean():.1%} positive")
for name, make in [("logistic regression", lambda: LogisticRegression(max_iter=2000)), ("linear SVM", LinearSVC)]:
    acc, f1 = [], []
    for seed in range(5):
        xtr, xte, ytr, yte = train_test_split(text, y, test_size=0.2, stratify=y, random_state=seed)
        vec = TfidfVectorizer(ngram_range=(1, 2))
        m = make().fit(vec.fit_transform(xtr), ytr)
        p = m.predict(vec.transform(xte))
        acc.append(accuracy_score(yte, p))
        f1.append(f1_score(yte, p, average="macro"))
    print(f"TF-IDF 1-2 grams + {name}: accuracy {np.mean(acc):.4f} (range {min(acc):.4f}-{max(acc):.4f}), "
          f"macro-F1 {np.mean(f1):.4f} (range {min(f1):.4f}-{max(f1):.4f})")
