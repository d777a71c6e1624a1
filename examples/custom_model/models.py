"""Example factories for `model: custom` (see the README's "Benchmark your own model").

`build` returns a torch.nn.Module and `build_keras` a keras.Model; both map token ids (B, T) to
logits (B, T, V). hlbench passes the suite's `kwargs`, plus `vocab_size` and `seq_len` because the
signatures name them. Framework imports stay inside the factories, so the torch worker never
imports Keras and the TensorFlow worker never imports torch.
"""


def build(vocab_size, seq_len, d_model=64, n_layer=2, n_head=4):
    """A small pre-norm causal transformer in PyTorch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
            self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
            self.mlp = nn.Sequential(
                nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
            )

        def forward(self, x):
            B, T, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, n_head, d // n_head).unbind(2)
            y = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            )
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, d))
            return x + self.mlp(self.norm2(x))

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, d_model)
            self.pos = nn.Embedding(seq_len, d_model)
            self.blocks = nn.Sequential(*(Block() for _ in range(n_layer)))
            self.head = nn.Linear(d_model, vocab_size, bias=False)

        def forward(self, idx):
            positions = torch.arange(idx.shape[1], device=idx.device)
            return self.head(self.blocks(self.embed(idx) + self.pos(positions)))

    return TinyLM()


def build_keras(vocab_size, seq_len, d_model=64, n_layer=2, n_head=4):
    """The same causal transformer in Keras."""
    import keras
    from keras import layers

    class TinyLM(keras.Model):
        def __init__(self):
            super().__init__()
            self.embed = layers.Embedding(vocab_size, d_model)
            self.pos = layers.Embedding(seq_len, d_model)
            # one list per kind of layer (Keras tracks the layers of a list attribute)
            self.norms1 = [layers.LayerNormalization(epsilon=1e-5) for _ in range(n_layer)]
            self.attentions = [
                layers.MultiHeadAttention(n_head, d_model // n_head) for _ in range(n_layer)
            ]
            self.norms2 = [layers.LayerNormalization(epsilon=1e-5) for _ in range(n_layer)]
            self.ups = [layers.Dense(4 * d_model, activation="gelu") for _ in range(n_layer)]
            self.downs = [layers.Dense(d_model) for _ in range(n_layer)]
            self.head = layers.Dense(vocab_size, use_bias=False)

        def call(self, ids):
            x = self.embed(ids) + self.pos(keras.ops.arange(keras.ops.shape(ids)[1]))
            blocks = zip(self.norms1, self.attentions, self.norms2, self.ups, self.downs)
            for norm1, attention, norm2, up, down in blocks:
                h = norm1(x)
                x = x + attention(h, h, use_causal_mask=True)
                x = x + down(up(norm2(x)))
            return self.head(x)

    return TinyLM()
