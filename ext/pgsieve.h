/*
 * pgsieve.h — declarations shared across the extension's modules.
 */
#ifndef PGSIEVE_H
#define PGSIEVE_H

#include "postgres.h"

#include "fmgr.h"

#include "pgsieve_compat.h"

extern void _PG_init(void);

/* fde.c: the MUVERA kernel with errors reported as who's */
struct PgsFdeParams;
extern void PgsFdeReportError(const char *who, int rc);
extern void PgsFdeEncode(const char *who, const struct PgsFdeParams *p, bool is_query, const float *x,
						 int ntok, float *out);

#endif							/* PGSIEVE_H */
