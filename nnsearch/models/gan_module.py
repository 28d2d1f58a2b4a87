"""The LightningModule that trains a GAN and scores its samples against held-out real rows.

Training alternates one discriminator step and one generator step per batch (non-saturating
losses). The adversarial losses say who is winning, not whether the samples are any good, so
they are only recorded (``train/d_loss``, ``train/g_loss``; ``train/loss`` is their sum). The
score compares as many generated rows as the validation fold has real rows, drawn from a fixed
noise seed, with those real rows: ``mmd`` (also ``val/loss``) and ``c2st_auc``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nnsearch.data.dataset import Task
from nnsearch.errors import NNSearchError
from nnsearch.models.metrics import compute_metrics
from nnsearch.models.base import HistoryModule
from nnsearch.models.gan import GAN

SAMPLE_SEED = 0


class GANModule(HistoryModule):
    """Adversarial training of ``net`` with manual optimization of its two parts.

    ``y`` is ignored. The configured optimizer is built twice, with ``net.generator_lr`` and
    ``net.discriminator_lr``; a scheduler is not supported (there are two optimizers to drive).
    """

    def __init__(
        self,
        net: GAN,
        task: Task,
        optimizer: Callable,
        scheduler: Callable | None = None,
        *,
        epoch_metrics: tuple[str, ...] = (),
    ) -> None:
        if scheduler is not None:
            raise NNSearchError("model=gan trains two optimizers and takes no learning-rate scheduler; use scheduler=none.")
        super().__init__(net, task, optimizer, None, epoch_metrics=epoch_metrics)
        self.automatic_optimization = False
        self._d_loss_sum, self._g_loss_sum = torch.zeros(()), torch.zeros(())
        self._val_real: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self):  # noqa: ANN201
        g = self.optimizer_factory(self.net.generator.parameters(), lr=self.net.generator_lr)
        d = self.optimizer_factory(self.net.discriminator.parameters(), lr=self.net.discriminator_lr)
        return [g, d]

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._d_loss_sum, self._g_loss_sum = torch.zeros(()), torch.zeros(())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        real, _ = batch
        opt_g, opt_d = self.optimizers()
        fake = self.net.sample(len(real))
        d_real, d_fake = self.net(real), self.net(fake.detach())
        d_loss = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
            d_fake, torch.zeros_like(d_fake)
        )
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        g_logit = self.net(fake)
        g_loss = F.binary_cross_entropy_with_logits(g_logit, torch.ones_like(g_logit))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self._d_loss_sum = self._d_loss_sum.to(d_loss.device) + d_loss.detach() * len(real)
        self._g_loss_sum = self._g_loss_sum.to(g_loss.device) + g_loss.detach() * len(real)
        self.add_train_loss(d_loss + g_loss, len(real))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._val_real.append(batch[0])

    def on_validation_epoch_end(self) -> None:
        real = torch.cat(self._val_real)
        self._val_real.clear()
        rows = max(self._train_rows, 1)
        row = {
            "train/loss": self.train_loss(),
            "train/d_loss": (self._d_loss_sum / rows).item(),
            "train/g_loss": (self._g_loss_sum / rows).item(),
        }
        names = list(dict.fromkeys(["mmd", *self.epoch_metrics]))
        metrics = compute_metrics(self.task, self._samples(len(real)), real, 0, names)
        row["val/loss"] = metrics["mmd"]
        row.update({f"val/{k}": v for k, v in metrics.items() if k in self.epoch_metrics})
        self.record_epoch(row)

    @torch.no_grad()
    def _samples(self, n: int) -> torch.Tensor:
        was_training = self.net.training
        self.net.eval()
        noise = torch.Generator(device="cpu").manual_seed(SAMPLE_SEED)
        samples = self.net.sample(n, generator=noise)
        self.net.train(was_training)
        return samples

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
        """``mmd`` and ``c2st_auc`` of ``len(x)`` generated rows against the real rows ``x``."""
        self.eval()
        return compute_metrics(self.task, self._samples(len(x)), x, 0, None)
