"""
The looped GPT: a small GPT-2 whose blocks are applied b times, with the embedded
prompt re-injected at every iteration, read out at the x tokens.

    e   = read_in(tokens) + pe              # the prompt, embedded once
    h_0 = 0
    h_t = ln_f(blocks(inject(h_{t-1}, e)))  # t = 1..b, the same weights every time
    y^(t) = read_out(h_t) at the x tokens

Reading order: attention, MLP, block, config, model (embedding, loop, truncation, loss).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

POS_EMBS = ('none', 'learned', 'sinusoidal', 'type')
INJECTS = ('add', 'none', 'concat', 'gated')
SELECTS = ('first', 'random', 'last', 'shuffle')
SCHEDULES = ('constant', 'shrink')
LOSS_ONS = ('all', 'query')
ATTENTIONS = ('sdpa', 'manual')


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; the causal mask is a switch, not a given."""

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.causal = config.causal
        self.attention = config.attention

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        dropout = self.dropout if self.training else 0.0
        if self.attention == 'sdpa':
            # fused kernel: the (T, T) matrix is never stored, masked blocks are skipped
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=self.causal)
        else:
            # the explicit path, kept as the plain baseline the benchmark compares against
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T)
            if self.causal:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~mask, float('-inf'))
            att = F.dropout(F.softmax(att, dim=-1), dropout, self.training)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class GeluLinear(torch.autograd.Function):
    """linear(gelu(u)) that keeps only u for the backward pass and recomputes gelu(u) there: autograd would
    keep both u (for GELU's gradient) and gelu(u) (for the weight's), two (B, T, mlp_size) tensors per block
    and loop. Same gradients, one elementwise GELU more per block and loop."""

    @staticmethod
    def forward(ctx, u, weight, bias):
        ctx.save_for_backward(u, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(u), weight, bias)

    @staticmethod
    def backward(ctx, grad):  # grad: (..., n_out)
        u, weight = ctx.saved_tensors
        a = F.gelu(u)  # recomputed
        grad_2d = grad.reshape(-1, grad.size(-1))
        grad_weight = (grad_2d.t() @ a.reshape(-1, a.size(-1)).to(grad.dtype)).to(weight.dtype)
        grad_bias = grad_2d.sum(0).to(weight.dtype) if ctx.has_bias else None
        grad_u = torch.ops.aten.gelu_backward(grad @ weight.to(grad.dtype), u)
        return grad_u, grad_weight, grad_bias


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_size, bias=config.bias)
        self.c_proj = nn.Linear(config.mlp_size, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.recompute_gelu = config.recompute_gelu

    def forward(self, x):
        u = self.c_fc(x)  # (B, T, mlp_size)
        if self.recompute_gelu and torch.is_grad_enabled():
            return self.dropout(GeluLinear.apply(u, self.c_proj.weight, self.c_proj.bias))
        return self.dropout(self.c_proj(F.gelu(u)))


class Block(nn.Module):
    """Pre-LayerNorm GPT-2 block."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


@dataclass
class LoopedGPTConfig:
    n_dims: int = 20          # d: size of each x
    n_points: int = 64        # N: the most in-context examples a prompt holds (sets the context 2N + 1)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    mlp_size: int = 256
    recompute_gelu: bool = True  # the backward pass recomputes GELU rather than storing its output
    dropout: float = 0.0
    bias: bool = True
    pos_emb: str = 'learned'  # none | learned | sinusoidal | type
    causal: bool = True
    attention: str = 'sdpa'   # sdpa | manual
    inject: str = 'add'       # add | none | concat | gated
    n_loops: int = 10         # b: iterations at training time (the truncation schedule counts in these)
    loss_window: int = 10     # T: the last T iterations are read out, carry gradient and enter the loss
    loss_on: str = 'all'      # all x positions, or the query only
    n_keep: int = 0           # examples kept after the cut; 0 keeps all
    select: str = 'first'     # first | random | last | shuffle
    truncate_after: int = 1   # cut after this iteration (0: straight after the embedding)
    n_keep_schedule: str = 'constant'  # constant | shrink

    @property
    def block_size(self):
        return 2 * self.n_points + 1


def sinusoidal_encoding(n_positions, n_embd):
    """PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C))."""
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)  # (P, 1)
    frequency = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    pe = torch.zeros(n_positions, n_embd)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency)[:, : n_embd // 2]
    return pe


def interleave(xs, ys):
    """Prompt tokens x_1, [y_1,0..0], ..., x_k, [y_k,0..0], x_{k+1}: (B, k+1, d), (B, k+1) -> (B, 2k+1, d).
    The query's y (ys[:, -1]) is the target and never enters the prompt."""
    B, P, d = xs.shape
    ys_wide = torch.zeros_like(xs)
    ys_wide[:, :, 0] = ys
    return torch.stack((xs, ys_wide), dim=2).view(B, 2 * P, d)[:, :-1]


class LoopedGPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.read_in = nn.Linear(config.n_dims, C)
        if config.pos_emb == 'learned':
            self.wpe = nn.Embedding(config.block_size, C)
        elif config.pos_emb == 'type':
            self.wpe = nn.Embedding(2, C)  # one vector for x tokens, one for y tokens
        elif config.pos_emb == 'sinusoidal':
            self.register_buffer('wpe', sinusoidal_encoding(config.block_size, C), persistent=False)
        if config.inject == 'concat':
            self.inject_proj = nn.Linear(2 * C, C)
        elif config.inject == 'gated':
            self.inject_gate = nn.Parameter(torch.ones(C))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(C, bias=config.bias)
        self.read_out = nn.Linear(C, 1)

        self.apply(self._init_weights)
        # read_in and read_out keep PyTorch's default init, as in Garg et al.'s and Yang et al.'s code: at
        # std 0.02 the injected prompt would be ~20x smaller than the normalised state it is added to
        self.read_in.reset_parameters()
        self.read_out.reset_parameters()
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith('c_proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    # --- the loop ------------------------------------------------------------

    def embed(self, xs, ys):
        """The prompt embedded once, with its positional encoding: (B, 2k+1, C)."""
        tokens = interleave(xs, ys)
        L = tokens.size(1)
        e = self.read_in(tokens)
        if self.config.pos_emb in ('learned', 'sinusoidal'):
            assert L <= self.config.block_size, f'prompt of {L} tokens, context is {self.config.block_size}'
            pe = self.wpe[:L] if self.config.pos_emb == 'sinusoidal' else self.wpe.weight[:L]
            e = e + pe
        elif self.config.pos_emb == 'type':
            e = e + self.wpe.weight[torch.arange(L, device=e.device) % 2]
        return self.drop(e)

    def inject(self, h, e):
        mode = self.config.inject
        if mode == 'add':
            return h + e
        if mode == 'none':
            return h  # e entered once, as h_0 (see forward)
        if mode == 'concat':
            return self.inject_proj(torch.cat((h, e), dim=-1))
        return h + self.inject_gate * e  # gated

    def step(self, h, e):
        """One loop iteration: h_t = ln_f(blocks(inject(h_{t-1}, e)))."""
        x = self.inject(h, e)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def examples_seen(self, t, n_examples, n_keep, n_loops_train):
        """How many examples iteration t (1-based) sees."""
        c = self.config
        if n_keep <= 0 or n_keep >= n_examples or t <= c.truncate_after:
            return n_examples
        if c.n_keep_schedule == 'shrink' and n_loops_train > c.truncate_after:
            # linear from N (at the cut) to n_keep (at the last training loop), then flat
            frac = min(1.0, (t - c.truncate_after) / (n_loops_train - c.truncate_after))
            return round(n_examples - (n_examples - n_keep) * frac)
        return n_keep

    def select(self, n_now, n, B, device, generator):
        """Which n of the n_now examples in hand to keep: (B, n) indices into them."""
        mode = self.config.select
        if mode == 'first':
            return torch.arange(n, device=device).expand(B, n)
        if mode == 'last':
            return torch.arange(n_now - n, n_now, device=device).expand(B, n)
        scores = torch.rand(B, n_now, device=device, generator=generator)
        chosen = scores.topk(n, dim=1).indices  # a random n-subset, in random order
        return chosen if mode == 'shuffle' else chosen.sort(dim=1).values

    def forward(self, xs, ys, n_loops=None, loss_window=None, n_keep=None, generator=None):
        """
        xs: (B, k+1, d) the k examples' x and the query's; ys: (B, k+1) their y (the query's is the target).
        Runs n_loops iterations; the last loss_window are read out and carry gradient.
        Returns (preds, loss): preds is a list of loss_window tensors (B, n_t + 1), the prediction at every
        x token still in the prompt after iteration t (the query's last); loss is the mean over those
        iterations of the squared error against the matching y (all positions, or the query only).
        """
        c = self.config
        n_loops = c.n_loops if n_loops is None else n_loops
        loss_window = min(c.loss_window if loss_window is None else loss_window, n_loops)
        n_keep = c.n_keep if n_keep is None else n_keep
        B, P, _ = xs.shape
        n_examples = P - 1

        e = self.embed(xs, ys)  # (B, L, C)
        # with inject=none the prompt enters once, as the first iteration's input
        h = e if c.inject == 'none' else torch.zeros_like(e)
        targets = ys  # (B, n_t + 1): the y of each x token still in hand, the query's last
        preds, losses = [], []
        first_graph_loop = n_loops - loss_window + 1
        for t in range(1, n_loops + 1):
            n_now = targets.size(1) - 1
            n = self.examples_seen(t, n_examples, n_keep, c.n_loops)
            if n < n_now:
                pick = self.select(n_now, n, B, xs.device, generator)  # (B, n)
                # examples go as whole (x, y) token pairs; the query token is always kept, last
                pairs = torch.stack((2 * pick, 2 * pick + 1), dim=2).view(B, 2 * n)
                query = torch.full((B, 1), 2 * n_now, device=xs.device)
                token_idx = torch.cat((pairs, query), dim=1).unsqueeze(-1).expand(-1, -1, e.size(-1))
                h, e = h.gather(1, token_idx), e.gather(1, token_idx)  # (B, 2n+1, C)
                targets = torch.cat((targets[:, :-1].gather(1, pick), targets[:, -1:]), dim=1)
            if t < first_graph_loop:
                with torch.no_grad():  # the loops before the loss window build no graph
                    h = self.step(h, e)
                continue
            h = self.step(h, e)
            pred = self.read_out(h[:, 0::2]).squeeze(-1)  # (B, n_t + 1), read out at the x tokens only
            preds.append(pred)
            if self.config.loss_on == 'query':
                losses.append(F.mse_loss(pred[:, -1], targets[:, -1]))
            else:
                losses.append(F.mse_loss(pred, targets))
        return preds, torch.stack(losses).mean()

    # --- training helpers ----------------------------------------------------

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        # matrices decay; biases, LayerNorm gains and the injection gate do not
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': weight_decay},
                  {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
        fused = device_type == 'cuda'  # one kernel for the whole update on CUDA
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    def flops_per_step(self, batch_size, n_examples, n_loops, loss_window, n_keep=None):
        """Matmul FLOPs of one training step: every loop forward, the last loss_window also backward (2x
        forward), each loop at the tokens it still has after truncation."""
        c = self.config
        n_keep = c.n_keep if n_keep is None else n_keep
        weights = 2 * c.n_layer * (4 * c.n_embd * c.n_embd + 2 * c.n_embd * c.mlp_size)  # per token
        total = 0
        for t in range(1, n_loops + 1):
            n_tokens = 2 * self.examples_seen(t, n_examples, n_keep, c.n_loops) + 1
            attention = 2 * c.n_layer * 2 * n_tokens * c.n_embd // (2 if c.causal else 1)  # q.k and att.v
            total += n_tokens * (weights + attention) * (3 if t > n_loops - loss_window else 1)
        return batch_size * total
