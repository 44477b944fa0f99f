/*
 * pgsieve.c — module entry point: kernel dispatch, GUCs and reloptions of
 * every access method.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/guc.h"

#include "binary_scan/bscan.h"
#include "multivec/multivec.h"
#include "sparse_block/sblock.h"
#include "pgs_kernels.h"
#include "pgsieve.h"

PGS_MODULE_MAGIC;

void
_PG_init(void)
{
	pgs_kernels_init();
	BscanInit();
	MvfdeInit();
	BscanTokenMapInit();
	SblockInit();
	MultiVecRerankInit();
	MarkGUCPrefixReserved("pgsieve");
}

/* Which SIMD level the kernels dispatched to on this server's CPU. */
PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_kernel_level);
Datum
pgsieve_kernel_level(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(pgs_kernels_level_name(pgs_kernels_level())));
}
