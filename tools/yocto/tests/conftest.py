import sys
from pathlib import Path

# tools/yocto on the path: the tests import crates.py as a module.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
