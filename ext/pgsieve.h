/*
 * pgsieve.h — declarations shared across the extension's modules.
 */
#ifndef PGSIEVE_H
#define PGSIEVE_H

#include "postgres.h"

#include "fmgr.h"

#include "pgsieve_compat.h"

extern void _PG_init(void);

#endif							/* PGSIEVE_H */
