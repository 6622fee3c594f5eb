"""Inspect a dataset: users, items, interactions and leave-one-out split sizes, as JSON."""

import json

EXAMPLES = """examples:
  karma-probe data stats                         # MovieLens-100k from the installed recbole package
  karma-probe data stats --dataset synthetic:0   # the seeded synthetic dataset
  karma-probe data stats --dataset path/to/ml-1m # any RecBole atomic dataset (NAME.inter + NAME.item)
"""


def add_arguments(p):
    p.add_argument("action", choices=["stats"], help="what to show")
    p.add_argument("--dataset", default="ml-100k", help="ml-100k (default), synthetic[:SEED], or a directory of atomic files")


def run(args) -> int:
    from karma_probe.data.dataset import load_dataset

    print(json.dumps(load_dataset(args.dataset).stats(), indent=2))
    return 0
