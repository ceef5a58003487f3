/**
 * The registered proxies, in the order tables list them. A new proxy is one file in this folder
 * exporting a `ProxyDef` (see ../proxy.ts and docs) plus one `registerProxy` line here.
 */
import { registerProxy } from '../proxy';
import { energyProxy } from './energy';
import { energyRowProxy } from './energy-row';
import { fisherProxy } from './fisher';
import { fisherOutputProxy } from './fisher-output';
import { fisherRowProxy } from './fisher-row';
import { giniPooledProxy } from './gini-pooled';
import { giniPrunedScoresProxy } from './gini-pruned-scores';
import { giniRefProxy } from './gini-ref';
import { reconProxy } from './recon';
import { reconRowProxy } from './recon-row';

registerProxy(giniPrunedScoresProxy);
registerProxy(giniPooledProxy);
registerProxy(giniRefProxy);
registerProxy(energyProxy);
registerProxy(energyRowProxy);
registerProxy(reconProxy);
registerProxy(reconRowProxy);
registerProxy(fisherProxy);
registerProxy(fisherRowProxy);
registerProxy(fisherOutputProxy);

export * from '../proxy';
export { prunedEnergyShare } from './energy';
export { prunedEnergyShareByRow } from './energy-row';
export { fisherLoss } from './fisher';
export { fisherOutputLoss } from './fisher-output';
export { fisherRowLoss } from './fisher-row';
export { giniPrunedScores } from './gini-pruned-scores';
export { giniReference } from './gini-ref';
export { keptInputGram, reconstructionErrors } from './recon';
