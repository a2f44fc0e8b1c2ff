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

typedef enum { MT_LAYER_LINEAR, MT_LAYER_RELU } mt_layer_kind;

typedef struct {
    char name[MT_NAME_LEN]; /* "fc1", "relu1", "head", ... */
    mt_layer_kind kind;
    int in, out;     /* features per row entering and leaving the layer */
    size_t offset;   /* index in θ of the first parameter (weight, then bias) */
    size_t n_params; /* 0 for parameter-free layers */
} mt_layer;

typedef struct {
    char arch[MT_NAME_LEN]; /* "mlp" */
    int n_layers;
    mt_layer layer[MT_MAX_LAYERS];
    int in, out;     /* features of the model's input and output rows */
    size_t n_params; /* P */
} mt_model;

/* One parameter tensor of the layout, as stored in a checkpoint's /model table. */
typedef struct {
    char name[2 * MT_NAME_LEN]; /* "fc1.weight" */
    const char *kind;           /* the layer kind: "linear" */
    size_t offset, size;
    int ndim;
    int shape[4];
} mt_tensor_info;

/* Builds the MLP in → hidden → hidden → out with ReLU: layers fc1, relu1, fc2, relu2, head.
 * Returns 0, or -1 if a width is not positive. */
int mt_model_mlp(mt_model *m, int in, int hidden, int out);

/* Fills θ[P] with the default initialisation: every linear layer's weight and bias uniform
 * in ±1/sqrt(fan_in) (PyTorch's default for nn.Linear), drawn from the seed's INIT stream,
 * so the same seed gives the same θ on every rank and machine. */
void mt_model_init_params(const mt_model *m, float *theta, uint64_t seed);

/* Number of parameter tensors and the i-th one (0 <= i < count), in θ order. */
int mt_model_tensor_count(const mt_model *m);
void mt_model_tensor(const mt_model *m, int i, mt_tensor_info *out);

/* Layer by name, or NULL. */
const mt_layer *mt_model_find_layer(const mt_model *m, const char *name);

/* Activations and their gradients / R-values for batches of up to max_rows rows. */
typedef struct mt_workspace mt_workspace;

mt_workspace *mt_workspace_init(const mt_model *m, int max_rows);
void mt_workspace_free(mt_workspace *ws); /* accepts NULL */

/* Forward pass on x[N, in]; returns the MSE loss against y[N, out]. Keeps the activations
 * in ws for the passes below. */
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

#endif
