"""scikit-learn baselines on the adult income data, on the official split (the first 16,281 rows are the
test set): logistic regression on one-hot categories and standardized numbers, and gradient boosting.

    .bench-venv/bin/pip install scikit-learn pandas    # once (bench/side_by_side.py makes .bench-venv)
    .bench-venv/bin/python examples/adult/baselines.py [PATH_TO_adult.csv.gz]
"""
import sys
import time

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

path = sys.argv[1] if len(sys.argv) > 1 else "data/adult/adult.csv.gz"
df = pd.read_csv(path, na_values=["?"])
y = (df.pop("income") == ">50K").astype(int)
df = df.drop(columns=["fnlwgt"])
test, train = slice(0, 16281), slice(16281, None)
cat = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
num = [c for c in df.columns if c not in cat]
pre = ColumnTransformer([
    ("num", StandardScaler(), num),
    ("cat", OneHotEncoder(handle_unknown="ignore"), cat),
])
models = {
    "logistic regression": make_pipeline(pre, LogisticRegression(max_iter=2000)),
    "gradient boosting (GradientBoostingClassifier)": make_pipeline(
        ColumnTransformer([("num", "passthrough", num), ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat)]),
        GradientBoostingClassifier(random_state=0)),
    "gradient boosting (HistGradientBoostingClassifier)": HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0),
}
X = df.copy()
Xh = df.copy()
for c in cat:
    Xh[c] = Xh[c].astype("category")
print(f"{len(df) - 16281} training rows, 16281 test rows")
for name, m in models.items():
    t = time.perf_counter()
    data = Xh if "Hist" in name else X.fillna({c: "missing" for c in cat})
    m.fit(data.iloc[train], y.iloc[train])
    p = m.predict_proba(data.iloc[test])[:, 1]
    print(f"{name}: accuracy {accuracy_score(y.iloc[test], p > 0.5):.4f}, ROC-AUC {roc_auc_score(y.iloc[test], p):.4f} "
          f"({time.perf_counter() - t:.1f} s)")
