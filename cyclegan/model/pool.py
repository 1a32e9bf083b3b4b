"""History buffer of generated images (Shrivastava et al. 2017), as CycleGAN's ImagePool uses it."""

from __future__ import annotations

from typing import Any

import torch

from cyclegan.errors import check_int


class ImagePool:
    """Up to ``pool_size`` past generated images; the discriminator sees a mix of old and new fakes.

    While the pool is filling, each new image is stored and returned. Once full, each image is, with
    probability 0.5, swapped for a uniformly chosen stored image (the stored one is returned and the new
    one takes its place); otherwise it is returned as is. ``pool_size`` 0 returns the input unchanged
    (detached).
    All draws come from ``generator`` (a CPU ``torch.Generator`` the caller owns and checkpoints), never
    from the global RNG, so a resumed run makes the same choices.
    """

    def __init__(self, pool_size: int, generator: torch.Generator) -> None:
        check_int("pool_size", pool_size, 0)
        self.pool_size = pool_size
        self.generator = generator
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the size of ``images`` drawn from the pool's history, updating the pool.

        The batch is detached whatever the pool size: the discriminator's loss must not reach back into
        the generator's graph, which the generator's backward pass has already freed."""
        images = images.detach()
        if self.pool_size == 0:
            return images
        returned = []
        for image in images:
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                returned.append(image)
                continue
            if torch.rand((), generator=self.generator).item() > 0.5:
                index = int(torch.randint(self.pool_size, (), generator=self.generator).item())
                stored = self.images[index]
                self.images[index] = image.clone()
                # A stored image of another size (variable-size training) cannot join this batch.
                returned.append(
                    stored.to(image.device, image.dtype) if stored.shape == image.shape else image
                )
            else:
                returned.append(image)
        return torch.stack(returned)

    def snapshot(self) -> list[torch.Tensor]:
        """The stored images as they are now, for `restore`; no copies, as `query` replaces a stored image
        and never changes one in place."""
        return list(self.images)

    def restore(self, snapshot: list[torch.Tensor]) -> None:
        """Undo the queries made since ``snapshot``; the generator's state is the owner's to restore."""
        self.images = list(snapshot)

    def state_dict(self) -> dict[str, Any]:
        """The stored images, on CPU so a checkpoint loads anywhere; the owner saves the generator."""
        return {"pool_size": self.pool_size, "images": [image.cpu() for image in self.images]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the stored images; they move to the training device when they are next returned."""
        images = list(state["images"])
        if len(images) > self.pool_size:
            raise ValueError(
                f"image pool checkpoint holds {len(images)} images but pool_size is {self.pool_size}"
            )
        self.images = images
