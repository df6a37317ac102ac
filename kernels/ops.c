// ops.c: choosing an attention implementation for a descriptor (kernels/ops.h). The rule of
// which shapes and masks each implementation runs lives in its own supports(); this file only
// walks the table, so there is one place per implementation and no second copy of the rule.
#include "kernels/ops.h"

#include <stdio.h>
#include <string.h>

#include "kernels/common.h"

const pb_attn_impl *pb_attn_choose(const pb_ops *ops, const char *want, const pb_attn_desc *d,
                                   char *err, size_t errlen) {
    PB_ASSERT(ops->attention && ops->attention[0]);
    int any = !want || !want[0] || strcmp(want, "auto") == 0;
    char names[256] = "", whys[512] = "";
    for (const pb_attn_impl *const *p = ops->attention; *p; p++) {
        const pb_attn_impl *a = *p;
        const char *why = a->supports(d);
        if (any && !why) return a;
        if (!any && strcmp(a->name, want) == 0) {
            if (!why) return a;
            pb_seterr(err, errlen, "model.attention = %s cannot run this model on the %s "
                      "backend: %s", want, ops->name, why);
            return NULL;
        }
        size_t n = strlen(names);
        snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", a->name);
        n = strlen(whys);
        if (why) snprintf(whys + n, sizeof whys - n, "%s%s: %s", n ? "; " : "", a->name, why);
    }
    if (any)
        pb_seterr(err, errlen, "no attention of the %s backend can run this model (%s)",
                  ops->name, whys);
    else
        pb_seterr(err, errlen, "model.attention = %s: the %s backend has no such attention (it "
                  "has: %s)", want, ops->name, names);
    return NULL;
}
