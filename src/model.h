/*
 * model.h — a model is a layout over one flat float32 parameter vector θ[P].
 *
 * The model owns no parameters: every pass takes θ as an argument, so the same model runs
 * on the meta-parameters, on adapted fast weights θ_k, or on θ + εv in a finite-difference
 * test. Gradients and Hessian-vector products come back as vectors of the same length P,
 * laid out like θ. A layer's parameters are contiguous: weight [out, in] (row-major, the
 * PyTorch order) followed by bias [out].
 *
 * The activations of one pass live in an mt_workspace, allocated once for a maximum batch
 * size; the passes never allocate.
 *
 * Usage:
 *   mt_model m;  mt_model_mlp(&m, 1, 40, 1);          // fc1 relu1 fc2 relu2 head
 *   float *theta = mt_malloc(m.n_params * sizeof *theta);
 *   mt_model_init_params(&m, theta, seed);
 *   mt_workspace *ws = mt_workspace_init(&m, 10);
 *   float loss = mt_model_loss_grad(&m, ws, theta, x, y, 10, grad);
 *   mt_model_hvp(&m, ws, theta, x, y, 10, v, hv);    // hv = ∇²L(θ)·v, exact
 *   mt_workspace_free(ws);
 */
#ifndef MT_MODEL_H
#define MT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define MT_MAX_LAYERS 32
#define MT_NAME_LEN 16

typedef enum {
    MT_LAYER_LINEAR,  /* rows [N, in] → [N, out] */
    MT_LAYER_RELU,    /* elementwise, any layout */
    MT_LAYER_CONV,    /* 3×3 conv, padding 1: CNHW [C,N,H,W] → [F,N,H,W] */
    MT_LAYER_BN,      /* batchnorm with batch statistics: CNHW → CNHW */
    MT_LAYER_POOL,    /* 2×2 max-pool: CNHW → [C,N,H/2,W/2] */
    MT_LAYER_FLATTEN  /* CNHW [C,N,H,W] → rows [N, C·H·W] */
} mt_layer_kind;

typedef enum { MT_LOSS_MSE, MT_LOSS_XENT } mt_loss_kind;

typedef struct {
    char name[MT_NAME_LEN]; /* "fc1", "relu1", "conv2", "bn2", "pool2", "head", ... */
    mt_layer_kind kind;
    int in_c, in_h, in_w;    /* shape of one example entering the layer (rows: c = features) */
    int out_c, out_h, out_w; /* and leaving it */
    int in, out;             /* values per example: in_c·in_h·in_w, out_c·out_h·out_w */
    size_t offset;           /* index in θ of the first parameter (weight, then bias) */
    size_t n_params;         /* 0 for parameter-free layers */
} mt_layer;

typedef struct {
    char arch[MT_NAME_LEN]; /* "mlp", "conv4" */
    mt_loss_kind loss;      /* mse (regression) or softmax cross-entropy (classification) */
    int n_layers;
    mt_layer layer[MT_MAX_LAYERS];
    int in, out;     /* values per example of the model's input and output */
    size_t n_params; /* P */
} mt_model;

/* One parameter tensor of the layout, as stored in a checkpoint's /model table. */
typedef struct {
    char name[2 * MT_NAME_LEN]; /* "fc1.weight" */
    const char *kind;           /* the layer kind: "linear", "conv2d", "batchnorm" */
    size_t offset, size;
    int ndim;
    int shape[4];
} mt_tensor_info;

/* Builds the MLP in → hidden → hidden → out with ReLU and MSE loss: layers fc1, relu1, fc2,
 * relu2, head. Input rows [N, in]. Returns 0, or -1 if a width is not positive. */
int mt_model_mlp(mt_model *m, int in, int hidden, int out);

/* Builds Conv4 (Vinyals et al.; Finn et al.): 4 × [conv 3×3 with `filters` channels,
 * batchnorm, ReLU, 2×2 max-pool], flatten, linear head to `ways` logits, softmax
 * cross-entropy. Layers conv1..4, bn1..4, relu1..4, pool1..4, flatten, head. Input images
 * are CNHW [C, N, H, W]. Returns 0, or -1 if a size is not positive or the image is too
 * small for four pools (H, W >= 16). */
int mt_model_conv4(mt_model *m, int C, int H, int W, int filters, int ways);

/* Fills θ[P] with the default initialisation, drawn from the seed's INIT stream so the same
 * seed gives the same θ on every rank and machine: every linear and conv layer's weight and
 * bias uniform in ±1/sqrt(fan_in) (PyTorch's defaults), batchnorm γ = 1 and β = 0. */
void mt_model_init_params(const mt_model *m, float *theta, uint64_t seed);

/* Number of parameter tensors and the i-th one (0 <= i < count), in θ order. */
int mt_model_tensor_count(const mt_model *m);
void mt_model_tensor(const mt_model *m, int i, mt_tensor_info *out);

/* Activations and their gradients / R-values for batches of up to max_rows rows. */
typedef struct mt_workspace mt_workspace;

mt_workspace *mt_workspace_init(const mt_model *m, int max_rows);
void mt_workspace_free(mt_workspace *ws); /* accepts NULL */

/* Forward pass on x (rows [N, in], or CNHW images for conv models); returns the loss
 * against y: targets [N, out] for MSE, class indices [N] stored as floats for cross-entropy.
 * Keeps the activations in ws for the passes below. */
float mt_model_forward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N);

/* Backward after mt_model_forward with the same arguments: grad[P] = ∇_θ L. With grad NULL
 * only the activation gradients are formed (what the R-backward pass needs). */
void mt_model_backward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N, float *grad);

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

#endif
