import sys
from pathlib import Path

# Tests import their helpers (tests/support.py) as a top-level module.
sys.path.insert(0, str(Path(__file__).parent))
