/*
 * model.h — a model is a small graph of ops laid over one flat float32 parameter vector θ[P].
 *
 * The model owns no parameters: every pass takes θ as an argument, so the same model runs
 * on the meta-parameters, on adapted fast weights θ_k, or on θ + εv in a finite-difference
 * test. Gradients and Hessian-vector products come back as vectors of the same length P,
 * laid out like θ.
 *
 * The graph. Op i reads one or two nodes and writes node i; node -1 is the model's input.
 * Ops are listed in an order where every input comes before its reader, so one loop from
 * the first op to the last is a forward pass and one loop back is a backward pass. A node
 * may feed several ops (a residual block's input feeds its main branch and its shortcut):
 * the backward passes add the gradients its readers send back. The loss reads the last
 * node. An op's parameters are one contiguous block of θ: weight (PyTorch's order: [out, in]
 * for linear, [F, C, k, k] for conv, γ for batchnorm) followed by its bias (β), if any.
 *
 * The activations of a pass live in an mt_workspace, allocated once for a maximum batch
 * size and the passes it must serve; the passes never allocate.
 *
 * Usage:
 *   mt_model m;  mt_model_mlp(&m, 1, 40, 1);          // fc1 relu1 fc2 relu2 head
 *   float *theta = mt_malloc(m.n_params * sizeof *theta);
 *   mt_model_init_params(&m, theta, seed);
 *   mt_workspace *ws = mt_workspace_init(&m, 10, MT_WS_HVP);
 *   float loss = mt_model_loss_grad(&m, ws, theta, x, y, 10, grad);
 *   mt_model_hvp(&m, ws, theta, x, y, 10, v, hv);    // hv = ∇²L(θ)·v, exact
 *   mt_workspace_free(ws);
 */
#ifndef MT_MODEL_H
#define MT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "conv.h"

#define MT_MAX_OPS 64
#define MT_NAME_LEN 16    /* tensor kinds; tensor names hold 2·MT_NAME_LEN */
#define MT_OP_NAME_LEN 24 /* "stage4.shortcut_bn" */

typedef enum {
    MT_OP_LINEAR,  /* rows [N, in] → [N, out], weight [out, in], bias [out] */
    MT_OP_CONV,    /* conv2d CNHW [C,N,H,W] → [F,N,Ho,Wo]: k×k, stride, padding, optional bias */
    MT_OP_BN,      /* batchnorm with batch statistics: CNHW → CNHW, γ [C], β [C] */
    MT_OP_RELU,    /* elementwise, any layout */
    MT_OP_LEAKY,   /* leaky ReLU with a negative slope, elementwise */
    MT_OP_POOL,    /* 2×2 max-pool, stride 2: CNHW → [C,N,H/2,W/2] */
    MT_OP_GAP,     /* global average pool: CNHW [C,N,H,W] → rows [N, C] */
    MT_OP_FLATTEN, /* CNHW [C,N,H,W] → rows [N, C·H·W] */
    MT_OP_ADD      /* residual add of two nodes of one shape */
} mt_op_kind;

typedef enum { MT_LOSS_MSE, MT_LOSS_XENT } mt_loss_kind;

/* Fusions (mt_op.fused), set on every op of the run:
 *  MT_FUSED_RELU_POOL     a relu whose only reader is a max-pool: the pool does the relu's work
 *                         in all four passes (max-pool and ReLU commute), the relu's passes do
 *                         nothing, and the relu's arrays are its input's;
 *  MT_FUSED_BN_RELU_POOL  batchnorm → relu → max-pool, each the only reader of the one before:
 *                         the batchnorm op runs all three (mt_bn_relu_pool_*, conv.h) with the
 *                         pool's output arrays as its own, the relu's and the pool's passes do
 *                         nothing, and the batchnorm and relu nodes hold no arrays. */
#define MT_FUSED_RELU_POOL 1
#define MT_FUSED_BN_RELU_POOL 2

typedef struct {
    char name[MT_OP_NAME_LEN]; /* "fc1", "conv2", "stage1.bn1", "head", ... */
    mt_op_kind kind;
    int src[2];              /* input nodes (-1: the model input); src[1] only for add */
    int in_c, in_h, in_w;    /* shape of one example of src[0] (rows: c = features) */
    int out_c, out_h, out_w; /* and of the op's output */
    int in, out;             /* values per example: in_c·in_h·in_w, out_c·out_h·out_w */
    mt_conv_geom conv;       /* conv: kernel, stride, padding and shapes */
    int has_bias;            /* linear, conv: a bias follows the weight */
    float slope;             /* leaky ReLU: the slope for negative inputs */
    int fused;               /* 0, or how the op runs fused with its neighbours (the MT_FUSED_*
                              * below). Set by the builders; clearing every op's flag gives the
                              * unfused passes, the same bits (tests compare them). */
    size_t offset;           /* index in θ of the op's first parameter */
    size_t n_params;         /* 0 for parameter-free ops */
} mt_op;

typedef struct {
    char arch[MT_NAME_LEN];  /* "mlp", "conv4", "resnet12" */
    mt_loss_kind loss;       /* mse (regression) or softmax cross-entropy (classification) */
    int n_ops;
    mt_op op[MT_MAX_OPS];
    int in_c, in_h, in_w;    /* one input example (rows: in_c features, in_h = in_w = 1) */
    int in, out;             /* values per example of the model's input and output */
    size_t n_params;         /* P: the ops' parameters, then the learned rates if any */
    size_t n_rates;          /* learned inner learning rates after the ops' parameters,
                              * θ[n_params − n_rates …): one per op parameter (Meta-SGD,
                              * mt_model_learn_rates) or one per step and tensor (LSLR) */
    int rate_steps;          /* LSLR: K, the rates are [K, tensors] (mt_model_learn_step_rates) */
} mt_model;

/* One parameter tensor of the layout, as stored in a checkpoint's /model table. */
typedef struct {
    char name[2 * MT_NAME_LEN]; /* "fc1.weight", "stage1.shortcut_bn.bias" */
    const char *kind;           /* the op kind: "linear", "conv2d", "batchnorm"; "lr" for rates */
    size_t offset, size;
    int ndim;
    int shape[4];
} mt_tensor_info;

/* Builds the MLP in → hidden → hidden → out with ReLU and MSE loss: ops fc1, relu1, fc2,
 * relu2, head. Input rows [N, in]. Returns 0, or -1 if a width is not positive. */
int mt_model_mlp(mt_model *m, int in, int hidden, int out);

/* Builds Conv4 (Vinyals et al.; Finn et al.): 4 × [conv 3×3 with `filters` channels and a
 * bias, batchnorm, ReLU, 2×2 max-pool], flatten, linear head to `ways` logits, softmax
 * cross-entropy. Ops conv1..4, bn1..4, relu1..4, pool1..4, flatten, head. Input images
 * are CNHW [C, N, H, W]. Returns 0, or -1 if a size is not positive or the image is too
 * small for four pools (H, W >= 16). */
int mt_model_conv4(mt_model *m, int C, int H, int W, int filters, int ways);

/* Builds ResNet-12 (Oreshkin et al. 2018; Lee et al. 2019): 4 stages of widths[0..3], each
 *   conv1 3×3 → bn1 → leaky → conv2 3×3 → bn2 → leaky → conv3 3×3 → bn3,
 *   plus shortcut 1×1 conv → shortcut_bn on the stage input, added, leaky, 2×2 max-pool
 * (convs without bias, leaky slope 0.1), then global average pool and a linear head to
 * `ways` logits, softmax cross-entropy. Ops are named stage1.conv1, stage1.bn1, …,
 * stage4.shortcut_bn, gap, head. Returns 0, or -1 if a size is not positive or the image
 * is too small for four pools (H, W >= 16). */
int mt_model_resnet12(mt_model *m, int C, int H, int W, const int widths[4], int ways);

/* Meta-SGD: appends a learned inner learning rate α for every op parameter to the layout,
 * after the ops' blocks (n_params doubles; the passes never read them). Their tensors are
 * named after the parameter's, "alpha.fc1.weight", of kind "lr". Call once, after building. */
void mt_model_learn_rates(mt_model *m);

/* MAML++'s LSLR: appends a learned inner learning rate per inner step and op parameter tensor,
 * one tensor "lslr" [K, tensors] of kind "lr" (step k's rate of tensor τ at row k, column
 * τ, tensors in θ order). Call once, after building, instead of mt_model_learn_rates. */
void mt_model_learn_step_rates(mt_model *m, int K);

/* Fills θ[P] with the default initialisation, drawn from the seed's INIT stream so the same
 * seed gives the same θ on every rank and machine: every linear and conv weight and bias
 * uniform in ±1/sqrt(fan_in) (PyTorch's defaults), batchnorm γ = 1 and β = 0. */
void mt_model_init_params(const mt_model *m, float *theta, uint64_t seed);

/* Number of parameter tensors and the i-th one (0 <= i < count), in θ order. */
int mt_model_tensor_count(const mt_model *m);
void mt_model_tensor(const mt_model *m, int i, mt_tensor_info *out);

/* Activations and their gradients / R-values for batches of up to max_rows rows. */
typedef struct mt_workspace mt_workspace;

/* The passes a workspace serves; each level includes the ones before it. */
typedef enum {
    MT_WS_FORWARD, /* mt_model_forward only: outputs */
    MT_WS_GRAD,    /* + mt_model_backward: output gradients */
    MT_WS_HVP      /* + the R-passes: R-values of outputs and of their gradients */
} mt_ws_passes;

mt_workspace *mt_workspace_init(const mt_model *m, int max_rows, mt_ws_passes passes);
void mt_workspace_free(mt_workspace *ws); /* accepts NULL */
/* Bytes the workspace holds (its arrays, not the struct). */
size_t mt_workspace_bytes(const mt_workspace *ws);

/* Forward pass on x (rows [N, in], or CNHW images for conv models); returns the loss
 * against y: targets [N, out] for MSE, class indices [N] stored as floats for cross-entropy.
 * Keeps the activations in ws for the passes below. */
float mt_model_forward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N);

/* Backward after mt_model_forward with the same arguments: grad[P] = ∇_θ L. With grad NULL
 * only the activation gradients are formed (what the R-backward pass needs). */
void mt_model_backward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N, float *grad);

/* mt_model_backward over ops first_op … last only: the gradients of their parameters (grad's
 * other blocks are left as they are) and of their nodes; first_op = 0 is mt_model_backward.
 * Adapting only the head (anil) needs no more. The R-passes need a full backward. */
void mt_model_backward_ops(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                           const float *y, int N, float *grad, int first_op);

/* R-passes after forward + backward with the same arguments: hv[P] = ∇²_θ L · v[P]. */
void mt_model_rforward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *v, int N);
void mt_model_rbackward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                        const float *v, int N, float *hv);

/* Convenience compositions of the passes above. */
float mt_model_loss_grad(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                         const float *y, int N, float *grad);
float mt_model_hvp(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                   const float *y, int N, const float *v, float *hv);

/* Model output of the last forward pass: [N, out], valid until the next pass. */
const float *mt_model_output(const mt_model *m, const mt_workspace *ws);

/* Classification: how many of the N examples of the last forward pass have their largest
 * logit at the label y[n] (0 for regression models). */
int mt_model_correct(const mt_model *m, const mt_workspace *ws, const float *y, int N);

/* Index of the op named `name`, or -1. */
int mt_model_find_op(const mt_model *m, const char *name);

#endif
