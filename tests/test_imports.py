"""The kernel and network layers import without the training stack (hydra, wandb, lightning)."""

import subprocess
import sys
import textwrap


def test_ops_and_nn_import_without_hydra_or_wandb() -> None:
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("hydra", "wandb"):
                    raise ImportError(f"blocked for this test: {name}")
                return None

        sys.meta_path.insert(0, Block())
        import cyclegan.ops
        import cyclegan.nn
        import cyclegan.data
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
