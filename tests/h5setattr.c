/*
 * h5setattr FILE NAME VALUE — replaces the scalar int64 attribute NAME of FILE's root group
 * with VALUE, through the HDF5 API (a byte patch would now fail HDF5's own metadata
 * checksums first). The tests use it to make hostile checkpoints: a step of -5, say.
 * Exit status 0, or 1 with a message.
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: h5setattr FILE NAME INT64\n");
        return 1;
    }
    char *end;
    long long value = strtoll(argv[3], &end, 10);
    if (*end) {
        fprintf(stderr, "h5setattr: %s is not an integer\n", argv[3]);
        return 1;
    }
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return 1;
    if (H5Aexists(f, argv[2]) > 0) H5Adelete(f, argv[2]);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, argv[2], H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int64_t v = (int64_t)value;
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    if (H5Fclose(f) < 0) ok = 0;
    if (!ok) fprintf(stderr, "h5setattr: cannot set %s in %s\n", argv[2], argv[1]);
    return ok ? 0 : 1;
}
