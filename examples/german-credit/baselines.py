"""scikit-learn baselines on German credit (credit-g.arff): 5-fold stratified cross-validation of logistic
regression (one-hot categories, standardized numbers) and gradient boosting, over five different shuffles of
the folds, so the comparison with kiln (whose folds are its own) does not hang on one split.

    .bench-venv/bin/python examples/german-credit/baselines.py [PATH_TO_credit-g.arff]
"""
import sys

import numpy as np
import pandas as pd
from scipy.io import arff
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

path = sys.argv[1] if len(sys.argv) > 1 else "data/german-credit/credit-g.arff"
data, _ = arff.loadarff(path)
df = pd.DataFrame(data)
for c in df.columns:
    if df[c].dtype == object:
        df[c] = df[c].str.decode("utf-8")
y = (df.pop("class") == "bad").astype(int)
cat = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
num = [c for c in df.columns if c not in cat]
pre = ColumnTransformer([("num", StandardScaler(), num), ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
models = {
    "logistic regression": make_pipeline(pre, LogisticRegression(max_iter=2000)),
    "gradient boosting": make_pipeline(pre, GradientBoostingClassifier(random_state=0)),
}
for name, m in models.items():
    aucs = [cross_val_score(m, df, y, cv=StratifiedKFold(5, shuffle=True, random_state=s), scoring="roc_auc").mean()
            for s in range(5)]
    print(f"{name}: 5-fold ROC-AUC {np.mean(aucs):.4f} (range over 5 shuffles {min(aucs):.4f}-{max(aucs):.4f})")
