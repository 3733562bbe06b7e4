"""An unmodified PyTorch Lightning script with W&B logging (``WandbLogger``'s defaults).

Nothing here knows about gpusweep: the sweep passes ``--lr=...`` and friends, WandbLogger
starts the run (in ``./wandb``, its default ``save_dir``), and ``val_loss`` is logged once
per epoch. Synthetic data: a noisy linear target, so a good learning rate learns it.
"""

import argparse

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--hidden", type=int, default=16)
parser.add_argument("--epochs", type=int, default=6)
args = parser.parse_args()


class Regressor(L.LightningModule):
    def __init__(self, lr: float, hidden: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def data(n: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=32)


L.seed_everything(0, verbose=False)
trainer = L.Trainer(max_epochs=args.epochs, logger=WandbLogger(), accelerator="cpu",
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, log_every_n_steps=1)
trainer.fit(Regressor(args.lr, args.hidden), data(256, 0), data(128, 1))
