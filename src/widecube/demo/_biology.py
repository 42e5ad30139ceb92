"""Gene symbols and cell-type knowledge behind the demo dataset (`widecube.demo`).

Real, well-known human symbols come first, grouped by the role they play in the demo
(housekeeping, mitochondrial, ribosomal, markers, shared modules, sex-linked); synthetic but
plausible symbols (``LINC01234``, ``ZNF512``, ``C1orf112``, ``AC012345.1``...) fill the rest.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CELL_CYCLE",
    "CELL_TYPES",
    "FEMALE",
    "HOUSEKEEPING",
    "INTERFERON",
    "LINEAGE_MARKERS",
    "MALE",
    "MITO",
    "RIBO",
    "STRESS",
    "gene_symbols",
    "real_symbols",
]


def _words(text: str) -> tuple[str, ...]:
    """Symbols from a space-separated string (lists of hundreds of symbols read better so)."""
    return tuple(text.split())


#: Highly expressed in almost every cell, roughly in decreasing order.
HOUSEKEEPING = _words(
    "MALAT1 TMSB4X B2M EEF1A1 ACTB FTL TPT1 FTH1 GAPDH MYL6 TMSB10 PTMA HLA-B UBA52 EEF1G NEAT1 "
    "PFN1 CFL1 OAZ1 H3-3B SRGN ACTG1 UBC RACK1 NACA EIF1 FAU TMA7 SERF2 COX4I1 ATP5F1E UQCRH NPM1 "
    "HNRNPA1 SH3BGRL3 ARHGDIB LAPTM5 CD74 HLA-A HLA-C HLA-E EEF2 PPIA YBX1 ZFP36L2 CALM1 GNB2 "
    "SAT1 PABPC1 BTF3 EIF3E NDUFA4 COX7C UBB MYL12A TXNIP DDX5 SERP1 ATP5MC2"
)

MITO = _words("MT-ND1 MT-ND2 MT-CO1 MT-CO2 MT-ATP8 MT-ATP6 MT-CO3 MT-ND3 MT-ND4L MT-ND4 MT-ND5 MT-ND6 MT-CYB")

RIBO = _words(
    "RPL3 RPL4 RPL5 RPL6 RPL7 RPL7A RPL8 RPL9 RPL10 RPL10A RPL11 RPL12 RPL13 RPL13A RPL14 RPL15 "
    "RPL17 RPL18 RPL18A RPL19 RPL21 RPL22 RPL23 RPL23A RPL24 RPL26 RPL27 RPL27A RPL28 RPL29 RPL30 "
    "RPL31 RPL32 RPL34 RPL35 RPL35A RPL36 RPL37 RPL37A RPL38 RPL39 RPL41 RPLP0 RPLP1 RPLP2 RPS2 "
    "RPS3 RPS3A RPS4X RPS5 RPS6 RPS7 RPS8 RPS9 RPS10 RPS11 RPS12 RPS13 RPS14 RPS15 RPS15A RPS16 "
    "RPS17 RPS18 RPS19 RPS20 RPS21 RPS23 RPS24 RPS25 RPS26 RPS27 RPS27A RPS28 RPS29 RPSA"
)

CELL_CYCLE = _words(
    "MKI67 TOP2A CENPF NUSAP1 TUBB TUBA1B HMGB2 STMN1 UBE2C BIRC5 CDK1 CCNB1 CCNB2 PCNA MCM2 MCM3 "
    "MCM5 MCM7 TYMS H2AZ1 RRM2 CDC20 PTTG1 AURKB ZWINT CKS1B CKS2 TK1 GINS2 CENPA"
)

INTERFERON = _words(
    "ISG15 IFI6 IFIT1 IFIT2 IFIT3 IFI44L MX1 MX2 OAS1 OAS2 OAS3 RSAD2 STAT1 IRF7 XAF1 LY6E IFITM3 "
    "ISG20 HERC5 EPSTI1 CMPK2 SAMD9L PLSCR1 BST2 IFI27"
)

STRESS = _words(
    "FOS FOSB JUN JUNB JUND EGR1 IER2 IER3 HSPA1A HSPA1B DNAJB1 HSPH1 HSP90AA1 DUSP1 ZFP36 ATF3 "
    "NR4A1 KLF6 PPP1R15A HSPA8 SOCS3 CCNL1"
)

FEMALE = ("XIST", "TSIX")
MALE = ("RPS4Y1", "DDX3Y", "UTY", "KDM5D", "EIF1AY", "USP9Y", "ZFY")

#: Genes shared by every type of a lineage (on top of each type's own markers).
LINEAGE_MARKERS: dict[str, tuple[str, ...]] = {
    "T": ("CD3D", "CD3E", "CD3G", "CD2", "IL32", "LCK", "CD247", "TRAC", "TRBC2"),
    "NK": ("NKG7", "GNLY", "KLRD1", "KLRF1", "PRF1", "CST7", "CTSW"),
    "B": ("CD79A", "CD79B", "MS4A1", "CD19", "BANK1", "CD22", "VPREB3"),
    "Myeloid": ("LYZ", "CST3", "TYROBP", "FCER1G", "AIF1", "LST1", "CTSS", "PSAP"),
    "DC": ("HLA-DQA1", "HLA-DQB1", "HLA-DRA", "HLA-DPB1", "CST3", "LGALS2"),
    "Megakaryocyte": ("PPBP", "PF4", "NRGN", "GNG11", "TUBB1"),
    "Erythroid": ("HBB", "HBA1", "HBA2", "HBD", "SLC4A1"),
    "Progenitor": ("CD34", "SOX4", "SPINK2", "PRSS57", "SMIM24"),
    "Neuron": ("SNAP25", "SYT1", "RBFOX3", "STMN2", "GAP43", "NRGN"),
    "Glia": ("SLC1A3", "APOE", "CLU", "SPARCL1", "QKI"),
    "Vascular": ("IFITM1", "SPARC", "COL4A1", "COL4A2", "IGFBP7"),
}

#: (name, lineage, typical abundance, own markers). The first 30 are a PBMC-like panel, the
#: rest brain; the demo takes the first ``n_types`` when there are enough names.
CELL_TYPES: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("CD4 naive T cell", "T", 0.14, ("CCR7", "LEF1", "TCF7", "SELL", "MAL")),
    ("CD14 monocyte", "Myeloid", 0.14, ("CD14", "S100A8", "S100A9", "VCAN", "FCN1", "S100A12")),
    ("CD4 memory T cell", "T", 0.11, ("IL7R", "S100A4", "AQP3", "CD40LG", "LTB")),
    ("CD8 naive T cell", "T", 0.06, ("CD8A", "CD8B", "NELL2")),
    ("CD8 effector memory T cell", "T", 0.06, ("GZMK", "CCL5", "GZMH", "CD8A")),
    ("NK cell", "NK", 0.06, ("FCGR3A", "SPON2", "FGFBP2", "GZMB")),
    ("naive B cell", "B", 0.05, ("TCL1A", "IGHD", "FCER2", "IGHM", "IL4R")),
    ("memory B cell", "B", 0.03, ("CD27", "AIM2", "TNFRSF13B", "SSPN")),
    ("CD16 monocyte", "Myeloid", 0.04, ("FCGR3A", "MS4A7", "CDKN1C", "RHOC", "IFITM2")),
    ("Treg", "T", 0.02, ("FOXP3", "IL2RA", "CTLA4", "RTKN2", "TIGIT")),
    ("MAIT cell", "T", 0.02, ("SLC4A10", "KLRB1", "TRAV1-2", "NCR3")),
    ("gamma-delta T cell", "T", 0.015, ("TRDC", "TRGC1", "TRGC2", "KLRC1")),
    ("cDC2", "DC", 0.01, ("CD1C", "FCER1A", "CLEC10A", "ENHO")),
    ("Platelet", "Megakaryocyte", 0.01, ("GP9", "ITGA2B", "GP1BB", "CAVIN2")),
    ("CD56bright NK cell", "NK", 0.008, ("NCAM1", "XCL1", "XCL2", "SPTSSB")),
    ("Proliferating T cell", "T", 0.006, ("MKI67", "TOP2A", "TYMS", "NUSAP1")),
    ("pDC", "DC", 0.005, ("LILRA4", "CLEC4C", "IL3RA", "TCF4", "SERPINF1")),
    ("Plasmablast", "B", 0.004, ("JCHAIN", "MZB1", "IGHG1", "XBP1", "TXNDC5")),
    ("Double-negative T cell", "T", 0.004, ("ZNF683", "TRDV2", "PTPN3")),
    ("HSPC", "Progenitor", 0.002, ("CRHBP", "AVP", "MLLT3", "NPR3")),
    ("cDC1", "DC", 0.002, ("CLEC9A", "XCR1", "IDO1", "CADM1")),
    ("Erythrocyte", "Erythroid", 0.002, ("ALAS2", "CA1", "AHSP")),
    ("ILC", "NK", 0.002, ("KIT", "TNFRSF4", "TNFRSF18", "SOX4")),
    ("Macrophage", "Myeloid", 0.003, ("CD68", "C1QA", "C1QB", "APOC1", "SELENOP")),
    ("Neutrophil", "Myeloid", 0.005, ("CSF3R", "FCGR3B", "CXCR2", "MMP9")),
    ("Mast cell", "Myeloid", 0.001, ("TPSAB1", "CPA3", "MS4A2", "HPGDS")),
    ("Basophil", "Myeloid", 0.001, ("CLC", "GATA2", "HDC", "ENPP3")),
    ("Plasma cell", "B", 0.002, ("IGHA1", "IGKC", "SDC1", "PRDM1")),
    ("CD8 central memory T cell", "T", 0.01, ("CD8B", "SELL", "CCR7", "GZMK")),
    ("Cytotoxic CD4 T cell", "T", 0.004, ("GZMB", "GNLY", "CX3CR1", "ITGB1")),
    ("Excitatory neuron L2/3", "Neuron", 0.12, ("SLC17A7", "CUX2", "SATB2", "CBLN2")),
    ("Excitatory neuron L4", "Neuron", 0.06, ("SLC17A7", "RORB", "RSPO1")),
    ("Excitatory neuron L5", "Neuron", 0.05, ("SLC17A7", "FEZF2", "BCL11B", "POU3F1")),
    ("Excitatory neuron L6", "Neuron", 0.05, ("SLC17A7", "FOXP2", "TLE4", "SYT6")),
    ("Inhibitory neuron PVALB", "Neuron", 0.03, ("GAD1", "GAD2", "PVALB", "TAC1")),
    ("Inhibitory neuron SST", "Neuron", 0.025, ("GAD1", "GAD2", "SST", "NPY")),
    ("Inhibitory neuron VIP", "Neuron", 0.025, ("GAD1", "GAD2", "VIP", "CALB2")),
    ("Inhibitory neuron LAMP5", "Neuron", 0.015, ("GAD1", "GAD2", "LAMP5", "NDNF")),
    ("Astrocyte", "Glia", 0.08, ("GFAP", "AQP4", "SLC1A2", "ALDH1L1", "GJA1")),
    ("Oligodendrocyte", "Glia", 0.15, ("MBP", "PLP1", "MOG", "MOBP", "ST18")),
    ("OPC", "Glia", 0.03, ("PDGFRA", "CSPG4", "OLIG2", "VCAN")),
    ("Microglia", "Glia", 0.04, ("CX3CR1", "P2RY12", "TMEM119", "CSF1R", "C1QA")),
    ("Endothelial cell", "Vascular", 0.01, ("CLDN5", "FLT1", "VWF", "PECAM1")),
    ("Pericyte", "Vascular", 0.005, ("PDGFRB", "RGS5", "KCNJ8", "NOTCH3")),
    ("VLMC", "Vascular", 0.003, ("DCN", "COL1A2", "LUM", "SLC6A13")),
    ("Smooth muscle cell", "Vascular", 0.002, ("ACTA2", "MYH11", "TAGLN", "CNN1")),
)

#: More well-known symbols, so the real part of the list reaches a few hundred.
_OTHER = _words(
    "TP53 EGFR MYC KRAS BRCA1 BRCA2 PTEN VEGFA TNF IL6 IL1B CXCL8 CCL2 CCL3 CCL4 CD44 CD69 CD38 "
    "HLA-DRB1 HLA-DPA1 HLA-DRB5 CD52 CD37 CD48 CD53 CORO1A LCP1 PTPRC RAC2 S100A6 S100A10 S100A11 "
    "ANXA1 ANXA2 VIM LGALS1 LGALS3 ITGB2 SPI1 CEBPB CEBPD IRF8 IRF4 PAX5 EBF1 TBX21 EOMES GATA3 "
    "RORC BCL6 BCL2 BCL11A IKZF1 IKZF2 RUNX3 ZEB2 KLF2 KLF4 ID2 ID3 NFKBIA TNFAIP3 CXCR4 CCR6 "
    "CCR4 CD28 ICOS PDCD1 LAG3 HAVCR2 CD274 CD86 CD80 CD40 CD83 IL2 IFNG IL10 TGFB1 GZMA GZMM "
    "CCL5 FGFBP2 PECAM1 CDH1 CDH2 EPCAM KRT8 KRT18 KRT19 COL1A1 COL3A1 FN1 MKI67 ALB APOA1 INS "
    "GCG TTR SOX2 SOX9 PAX6 NES OLIG1 NEUROD1 NEUROD2 TBR1 RELN CALB1 NEFL NEFM MAP2 TUBB3 DLG4 "
    "GRIN1 GRIN2B GRIA2 CAMK2A SYN1 SYP MEF2C ELAVL4 PCP4 CNR1 HTR2C DRD1 DRD2 TH SLC6A3 CHAT "
    "GABRA1 SCN1A KCNQ2 APP MAPT SNCA PSEN1 LRRK2 GRN TREM2 HEXB CTSB CTSD LAMP1 LAMP2 SQSTM1 "
    "HIF1A EPAS1 ARNT NFE2L2 KEAP1 SOD1 SOD2 CAT GPX1 PRDX1 TXN HMOX1 MT2A MT1X MT1E LDHA LDHB "
    "PKM ENO1 PGK1 TPI1 ALDOA HK1 G6PD IDH1 IDH2 SDHA CS ACLY FASN SCD HMGCR LDLR APOB PPARG "
    "PPARA SREBF1 INSR IGF1R AKT1 MTOR PIK3CA MAPK1 MAPK3 JAK1 JAK2 STAT3 STAT5A NOTCH1 DLL1 JAG1 "
    "WNT5A CTNNB1 AXIN2 LGR5 SHH PTCH1 GLI1 SMAD2 SMAD3 SMAD4 BMP4 FGF2 FGFR1 PDGFB KDR TEK "
    "ANGPT2 NOS3 EDN1 ACE2 TMPRSS2 CD36 CD163 MRC1 MARCO MSR1"
)

_PREFIXES = ("FAM", "TMEM", "CCDC", "ANKRD", "LRRC", "PRR", "KLHL", "ZBTB", "SLC", "ZNF", "KIAA")


def _synthetic(rng: np.random.Generator) -> str:
    """One plausible-looking symbol; the mix roughly follows GENCODE's share of each form."""
    kind = rng.random()
    if kind < 0.30:
        clone = ("AC", "AL", "AP")[rng.integers(0, 3)]
        return f"{clone}{rng.integers(10_000, 999_999):06d}.{rng.integers(1, 4)}"
    if kind < 0.45:
        return f"LINC{rng.integers(0, 3_000):05d}"
    if kind < 0.55:
        return f"ZNF{rng.integers(1, 999)}"
    if kind < 0.62:
        chrom = rng.integers(1, 24)
        return f"C{chrom if chrom < 23 else 'X'}orf{rng.integers(1, 200)}"
    if kind < 0.67:
        return f"SNHG{rng.integers(1, 40)}" if rng.random() < 0.3 else f"MIR{rng.integers(1, 9999)}HG"
    prefix = _PREFIXES[rng.integers(0, len(_PREFIXES))]
    if prefix == "KIAA":
        return f"KIAA{rng.integers(100, 2_000):04d}"
    if prefix == "SLC":
        return f"SLC{rng.integers(1, 60)}A{rng.integers(1, 15)}"
    if prefix == "FAM":
        return f"FAM{rng.integers(3, 240)}{'ABC'[rng.integers(0, 3)]}"
    return f"{prefix}{rng.integers(1, 300)}"


def real_symbols() -> list[str]:
    """The well-known symbols in priority order (the demo keeps the first ones if it must)."""
    groups: list[tuple[str, ...] | list[str]] = [HOUSEKEEPING, MITO, RIBO]
    groups += [lin for lin in LINEAGE_MARKERS.values()]
    groups += [markers for _, _, _, markers in CELL_TYPES]
    groups += [CELL_CYCLE, INTERFERON, STRESS, FEMALE, MALE, _OTHER]
    return list(dict.fromkeys(s for group in groups for s in group))


def gene_symbols(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` unique symbols: the real ones first (as many as fit), then synthetic ones.

    >>> gene_symbols(3, np.random.default_rng(0))
    ['MALAT1', 'TMSB4X', 'B2M']
    """
    symbols = real_symbols()[:n]
    seen = set(symbols)
    while len(symbols) < n:
        name = _synthetic(rng)
        if name not in seen:
            seen.add(name)
            symbols.append(name)
    return symbols
