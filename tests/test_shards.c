/* test_shards.c — shard ranges of the sharded optimizer: a pure function of (P, N) that
 * tiles [0, P) in rank order with sizes differing by at most one. */
#include <stdio.h>

#include "dist.h"
#include "testutil.h"

int main(void)
{
    const size_t sizes[] = {0, 1, 2, 7, 97, 1761, 112261};
    int tiles = 1, balanced = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int n = 1; n <= 9; n++) {
            size_t next = 0, smallest = (size_t)-1, largest = 0;
            for (int r = 0; r < n; r++) {
                size_t lo, hi;
                mt_shard_range(sizes[i], n, r, &lo, &hi);
                tiles &= lo == next && hi >= lo;
                next = hi;
                if (hi - lo < smallest) smallest = hi - lo;
                if (hi - lo > largest) largest = hi - lo;
            }
            tiles &= next == sizes[i];
            balanced &= largest - smallest <= 1;
        }
    tu_expect(tiles, "shards tile [0, P) in rank order for P in {0..112261}, N in 1..9");
    tu_expect(balanced, "shard sizes differ by at most one");
    return tu_finish();
}
